"""What fleetopt raises and warns, and how the command line answers each.

Every library error is one of these; the CLI maps them to exit statuses (``fleetopt.cli``):
``FleetoptError`` 2 (a user mistake, one line naming the field), ``InfeasibleError`` 3 (a
diagnosis), ``NoPlanInTimeError`` 4, ``Interrupted`` 130.  ``PlanCheckError`` is a bug: a
solved plan that breaks one of its own constraints (``fleetopt.plan.check_plan``).
"""

from __future__ import annotations


class FleetoptError(ValueError):
    """A user-facing mistake: bad id, bad value, bad file.  Its message is one line that
    names the offending field and what was wrong; the CLI prints it and exits with 2."""


class InfeasibleError(RuntimeError):
    """No plan satisfies the constraints; the message is a diagnosis.  CLI exit status 3."""


class NoPlanInTimeError(RuntimeError):
    """The solver's time limit ended before any plan was found: not a proof of
    infeasibility.  CLI exit status 4."""


class PlanCheckError(AssertionError):
    """A plan that breaks one of its constraints when they are recomputed from its pools
    (``fleetopt.plan.check_plan``): a bug in fleetopt, never a user mistake.  The message
    lists every violation."""


class FleetoptWarning(UserWarning):
    """Something the user should know but that does not stop the command (e.g. requests
    longer than the last pool's window, clamped into it).  The CLI prints each distinct one
    once, on one line of stderr."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended a long command cleanly (what was finished is kept); the
    message says what survives and how to resume.  CLI exit status 130."""
