"""The ``fleetopt`` command: a thin shell over the library.

``cli`` is the click group (``fleetopt.cli.app``, its commands one family per module);
``main`` runs it and maps errors to exit statuses.  Every user mistake ends in one line on
stderr and exit status 2 (``--debug`` shows the traceback); an infeasible plan exits with 3
and a diagnosis; a time limit that ends before any plan is found with 4; Ctrl-C or SIGTERM
with 130 and one line saying what was kept; a file that cannot be written (full or
read-only disk) with one line; a warning (``FleetoptWarning``) is one line, each distinct
one once.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import TextIO

import click

from fleetopt import console
from fleetopt.cli.app import cli
from fleetopt.errors import FleetoptError, FleetoptWarning, InfeasibleError, NoPlanInTimeError

__all__ = ["cli", "main", "run"]


_PYTHON_SHOWWARNING = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """``FleetoptWarning`` as one line on stderr; anything else as Python shows it."""
    if isinstance(category, type) and issubclass(category, FleetoptWarning):
        if not console.quiet():
            click.echo(f"fleetopt: warning: {message}", err=True)
    else:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the click group and maps errors to exit codes (2 user, 3
    infeasible, 4 no plan found within the solver's time limit, 130 interrupted, 1 a file the
    system would not write or an internal error)."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    console.configure(quiet=False)                              # the group's -q/--quiet may change it
    with warnings.catch_warnings():
        warnings.simplefilter("default", FleetoptWarning)       # each distinct warning once
        warnings.showwarning = _show_warning
        return _main(argv, debug)


def _main(argv: list[str], debug: bool) -> int:
    try:
        # what click's main does, without its handling of Ctrl-C (a blank line and Abort)
        with cli.make_context("fleetopt", list(argv)) as ctx:
            cli.invoke(ctx)
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("fleetopt: interrupted", err=True)
        return 130
    except click.UsageError as e:
        if debug:
            raise
        if type(e).__name__ == "NoArgsIsHelpError":            # bare `fleetopt` or a group: the help
            click.echo(e.format_message())
            return 0
        click.echo(f"fleetopt: error: {e.format_message()}", err=True)
        return 2
    except FleetoptError as e:
        if debug:
            raise
        click.echo(f"fleetopt: error: {e}", err=True)
        return 2
    except InfeasibleError as e:
        if debug:
            raise
        click.echo(f"fleetopt: infeasible: {e}", err=True)
        return 3
    except NoPlanInTimeError as e:
        if debug:
            raise
        click.echo(f"fleetopt: {e}", err=True)
        return 4
    except KeyboardInterrupt as e:
        if debug:
            raise
        click.echo(f"fleetopt: interrupted{': ' + str(e) if str(e) else ''}", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:                    # a write the system refused, not caught where it happened
        if debug:
            raise
        where = f" '{e.filename}'" if e.filename else ""
        click.echo(f"fleetopt: error: cannot access{where} ({e.strerror or type(e).__name__})", err=True)
        return 1
    except Exception as e:                  # a bug: still one line, the traceback with --debug
        if debug:
            raise
        first = (str(e).splitlines() or [""])[0]
        click.echo(f"fleetopt: internal error (a bug; --debug shows the traceback): {type(e).__name__}: {first}",
                   err=True)
        return 1


def run() -> None:
    """The console entry point: ``main``, then a quick exit.  Every command has closed (and
    atomically renamed) the files it wrote and shut its pools and clients before it returns,
    so after flushing stdout, stderr and logging the process ends with ``os._exit``,
    skipping the interpreter's teardown of the sized columns and imported modules (tens of
    milliseconds, against the 0.7 s budget of ``fleetopt solve``)."""
    code = main()
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):       # a closed pipe: nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
