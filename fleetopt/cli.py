"""The ``fleetopt`` command: a thin shell over the library.

Every user mistake ends in one line on stderr and exit status 2 (``--debug`` shows the
traceback); an infeasible plan exits with 3 and a diagnosis; a time limit that ends before
any plan is found with 4; Ctrl-C or SIGTERM with 130 and one line saying what was kept; a
file that cannot be written (full or read-only disk) with one line; a warning
(``FleetoptWarning``) is one line, each distinct one once.  Heavy libraries are imported
inside the commands that need them, so ``fleetopt --help`` stays fast.
"""

from __future__ import annotations

import math
import sys
import warnings

import click

from fleetopt import FleetoptError, FleetoptWarning, InfeasibleError, NoPlanInTimeError

FORMATS = click.Choice(["table", "json", "csv"])


def _catalog(ctx: click.Context):
    from fleetopt.catalog import load_catalog

    return load_catalog(tuple(ctx.obj.get("catalog", ())))


def _ints(text: str, name: str) -> list[int]:
    try:
        vals = [int(float(x)) for x in text.split(",") if x.strip()]
    except ValueError:
        raise FleetoptError(f"{name}: expected comma-separated integers, got '{text}'") from None
    if not vals:
        raise FleetoptError(f"{name}: expected at least one value")
    return vals


def _profile(ctx, mode, model, gpu, tp, power_cap_w=None, gmu=None, dp=1):
    from fleetopt.profile import make_profile

    kw: dict = {}
    if dp != 1:
        if mode != "physical":
            raise FleetoptError("dp: data-parallel attention is modelled in physical mode only")
        if dp < 1:
            raise FleetoptError(f"dp must be >= 1, got {dp}")
        m = _catalog(ctx).model(model)
        if not m.is_moe:
            raise FleetoptError(f"dp: data-parallel attention with expert parallelism needs an MoE model; {m.id} is dense")
        kw["dp"] = dp
    if mode == "physical":
        if power_cap_w is not None:
            if not math.isfinite(power_cap_w) or power_cap_w <= 0:
                raise FleetoptError(f"power-cap-w must be a finite number > 0, got {power_cap_w}")
            idle = _catalog(ctx).gpu(gpu).idle_w
            if power_cap_w < idle:
                raise FleetoptError(f"power-cap-w must be at least the GPU's idle power ({idle:g} W), got {power_cap_w:g}")
            kw["power_cap_w"] = power_cap_w
        if gmu is not None:
            if not 0 < gmu <= 1:
                raise FleetoptError(f"gpu-memory-utilization must be in (0, 1], got {gmu}")
            kw["gpu_memory_utilization"] = gmu
    return make_profile(mode, model, gpu, tp, _catalog(ctx), **kw)


def _emit(obj, fmt: str, title: str | None = None) -> None:
    from fleetopt.output import render, to_json

    if fmt == "json":
        click.echo(to_json(obj))
    else:
        click.echo(render(obj if isinstance(obj, list) else [obj], fmt, title))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--catalog", "catalog", multiple=True, type=click.Path(dir_okay=False),
              help="Extra GPU/model catalog YAML (adds or overrides entries; also $FLEETOPT_CATALOG).")
@click.option("--calibration", "calibration", default=None, type=click.Path(dir_okay=False),
              envvar="FLEETOPT_CALIBRATION",
              help="Calibration file from 'fleetopt calibrate' (also $FLEETOPT_CALIBRATION); default: packaged.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bars and no warnings on stderr (errors are still shown).")
@click.version_option(package_name="fleetopt")
@click.pass_context
def cli(ctx: click.Context, catalog, calibration, debug, quiet):
    """Plan LLM serving fleets for tokens per joule: pool boundaries, GPU types, counts."""
    from fleetopt import console

    ctx.ensure_object(dict)
    ctx.obj["catalog"] = catalog
    ctx.obj["debug"] = debug
    ctx.obj["quiet"] = quiet
    console.configure(quiet=quiet)
    if calibration:
        from fleetopt.calibration_files import load_calibration

        load_calibration(calibration)


mode_opt = click.option("--mode", type=click.Choice(["physical", "paper", "paper-computed"]), default="physical",
                        show_default=True, help="physical (calibrated, default) or the published 1/W model.")


@cli.command()
@click.option("--model", required=True, help="Model id, e.g. llama-3.1-70b.")
@click.option("--gpu", required=True, help="GPU id, e.g. H100.")
@click.option("--tp", type=int, default=1, show_default=True, help="Tensor-parallel degree (GPUs per instance).")
@click.option("--contexts", default="2048,4096,8192,16384,32768,65536,131072", show_default=True,
              help="Context windows, comma-separated tokens.")
@click.option("--output-tokens", type=int, default=512, show_default=True,
              help="Output tokens per sequence (physical mode; prompt = window - output).")
@click.option("--admission", type=click.Choice(["reserve", "paged"]), default="reserve", show_default=True)
@click.option("--power-cap-w", type=float, default=None, help="Per-GPU power cap (DVFS), W.")
@click.option("--gpu-memory-utilization", "gmu", type=float, default=None, help="vLLM gpu_memory_utilization (0.9).")
@mode_opt
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def law(ctx, model, gpu, tp, contexts, output_tokens, admission, power_cap_w, gmu, mode, fmt):
    """Tokens per joule against the context window at saturation (the 1/W law)."""
    from fleetopt.law import law_rows

    if output_tokens <= 0:
        raise FleetoptError(f"output-tokens must be > 0, got {output_tokens}")
    prof = _profile(ctx, mode, model, gpu, tp, power_cap_w, gmu)
    rows = law_rows(prof, _ints(contexts, "contexts"), output_tokens, admission)
    _emit(rows, fmt, f"{prof.model.id} on {tp} x {prof.gpu.id}, mode {mode}, admission {admission}")


@cli.command()
@click.option("--model", required=True)
@click.option("--gpu", required=True)
@click.option("--tp", type=int, default=1, show_default=True)
@click.option("--dp", type=int, default=1, show_default=True,
              help="Data-parallel attention ranks with expert parallelism (MoE); the instance has tp x dp GPUs.")
@click.option("--batch", type=int, required=True, help="Sequences decoding together.")
@click.option("--prompt-tokens", type=int, required=True)
@click.option("--output-tokens", type=int, required=True)
@click.option("--power-cap-w", type=float, default=None, help="Per-GPU power cap (DVFS), W.")
@click.option("--gpu-memory-utilization", "gmu", type=float, default=None)
@mode_opt
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def estimate(ctx, model, gpu, tp, dp, batch, prompt_tokens, output_tokens, power_cap_w, gmu, mode, fmt):
    """One operating point: step time, TTFT, power and energy per token and per query."""
    from fleetopt.law import estimate as est

    prof = _profile(ctx, mode, model, gpu, tp, power_cap_w, gmu, dp)
    _emit(est(prof, batch, prompt_tokens, output_tokens), fmt)


@cli.command()
@click.argument("what", type=click.Choice(["gpus", "models"]))
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.pass_context
def catalog(ctx, what, fmt):
    """List the GPU or model catalog."""
    from fleetopt.catalog import gpu_table, model_table

    cat = _catalog(ctx)
    _emit(gpu_table(cat) if what == "gpus" else model_table(cat), fmt)


def _register_more() -> None:
    """Commands that live in their own modules (instances, evaluation, solving)."""
    try:
        from fleetopt import commands  # noqa: F401
    except ImportError:
        pass
    from fleetopt import energy_commands  # noqa: F401  (fleetopt energy, fleetopt energy-map)


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """``FleetoptWarning`` as one line on stderr; anything else as Python shows it."""
    if isinstance(category, type) and issubclass(category, FleetoptWarning):
        from fleetopt import console

        if not console.quiet():
            click.echo(f"fleetopt: warning: {message}", err=True)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the click group and maps errors to exit codes (2 user, 3
    infeasible, 4 no plan found within the solver's time limit, 130 interrupted, 1 a file the
    system would not write or an internal error)."""
    _register_more()
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    from fleetopt import console

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
    import os

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
