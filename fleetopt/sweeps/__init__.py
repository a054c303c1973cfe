"""``fleetopt sweep``: many solves from one spec, resumable, local or on a Dask cluster:
the spec and its cases (``spec``), the rows' declared schema (``rows``), one case in a
worker (``worker``), the Dask transport (``remote``), the driver (``driver``) and the
report (``report``, ``fleetopt sweep-report``).

A spec (YAML, validated like instances) names a base instance and how cases vary it:

* ``grid``: axes combined as a cartesian product.  An axis is either ``path: [values]``
  (an instance field path, as ``--set`` takes it) or a named axis whose values each carry
  their own overrides: ``name: [{value: 0.1, set: {path: value, ...}}, ...]`` (to move
  several fields together, e.g. the two weights of a traffic mix);
* ``cases``: an explicit list of ``{path: value, ...}`` override sets;
* ``random``: ``samples`` cases drawn with ``seed`` from ``ranges`` (uniform floats,
  ``[lo, hi]``) and ``choices`` (lists);
* ``instances``: a folder of instance files instead of a base (one case per file).

Before any case runs, every case is built and validated (the base must exist, every
axis path must be a field, every value valid, the model and GPUs known): a bad spec is one
line and exit 2, and nothing is written.

Each case has a stable ``case_id``: a hash of the case's instance as it will be solved
(the base's content with the case's overrides applied, the contents of the files it
reads) and its labels, so editing the base re-runs exactly the cases it changes.  Each
case is written, as it finishes, to ``OUT/cases/<case_id>.parquet`` by an atomic rename,
so a sweep killed at any moment (SIGKILL included) keeps every finished case and never
holds half a row or a duplicate; re-running the command skips the finished cases and
removes the rows of cases no longer in the spec.  A case that fails while solving is
recorded with its error and the sweep goes on (``--retry-failed`` runs those again).
Every row has one declared Arrow schema (``rows``), so pandas, ``pyarrow.dataset``,
duckdb and polars read ``OUT/cases`` as one table.  With ``--scheduler`` (Dask) the
workers share nothing with the client but the network (``remote``).

An output folder belongs to one spec (``OUT/sweep.json`` names it, and is rewritten only
when it changes, so a finished sweep resumes on a read-only disk); another spec is
refused unless ``--force``.  One sweep at a time writes a folder (an ``flock`` the kernel
drops when its holder dies).  Ctrl-C or SIGTERM stops the workers at once and cancels
the queued cases (finished rows stay); local workers die with their parent, however it
ends; temporaries of killed runs are removed on the next.
"""

from __future__ import annotations

from fleetopt.sweeps.driver import run_sweep
from fleetopt.sweeps.spec import SweepSpec, expand, load_spec

__all__ = ["SweepSpec", "expand", "load_spec", "run_sweep"]
