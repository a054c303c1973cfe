"""fleetopt: plan LLM serving fleets (context-length pools, GPU types, counts) for tokens per joule.

The library is layered (see README): ``catalog`` (GPUs, models) -> ``physics`` (KV cache,
roofline step times, power, energy) -> ``profile`` (the mode switch: ``physical`` or
``paper``) -> workload/sizing -> formulations -> solve.  Lower layers never import higher
ones, and nothing heavy (pandas, pyomo, scipy) is imported at package import time.
"""

__version__ = "0.1.0"


class FleetoptError(ValueError):
    """A user-facing mistake: bad id, bad value, bad file.  Its message is one line that
    names the offending field and what was wrong; the CLI prints it and exits with 2."""


class InfeasibleError(RuntimeError):
    """No plan satisfies the constraints; the message is a diagnosis.  CLI exit status 3."""


class NoPlanInTimeError(RuntimeError):
    """The solver's time limit ended before any plan was found: not a proof of
    infeasibility.  CLI exit status 4."""


class FleetoptWarning(UserWarning):
    """Something the user should know but that does not stop the command (e.g. requests
    longer than the last pool's window, clamped into it).  The CLI prints each distinct one
    once, on one line of stderr."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended a long command cleanly (what was finished is kept); the
    message says what survives and how to resume.  CLI exit status 130."""
