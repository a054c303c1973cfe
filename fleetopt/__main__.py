"""``python -m fleetopt`` = the ``fleetopt`` command."""

from fleetopt.cli import run

run()
