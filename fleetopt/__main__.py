"""``python -m fleetopt`` = the ``fleetopt`` command."""

import sys

from fleetopt.cli import main

sys.exit(main())
