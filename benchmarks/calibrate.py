"""Fit the physical model's coefficients to measured H100 runs and report the residuals.

    python benchmarks/calibrate.py            # report residuals of the packaged defaults
    python benchmarks/calibrate.py --fit      # refit, print the new Calibration, then report

Data (read from ../shared/data, never copied): ML.ENERGY v3 H100 LM-Arena chat runs (mean
step = batch / output throughput, median inter-token latency, per-GPU power) and Splitwise
H100 Llama-2-70B prefill times at batch 1.  Writes benchmarks/results/calibration.md and
calibration_residuals.csv.  Least squares on log residuals (scipy), one global parameter
set: GPU-specific behaviour comes only from spec sheets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _mlenergy import MLENERGY, SPLITWISE, mlenergy_rows  # noqa: E402

from fleetopt.catalog import load_catalog  # noqa: E402
from fleetopt.physics.calibration import DEFAULT, Calibration  # noqa: E402
from fleetopt.physics.roofline import prefill_ms  # noqa: E402
from fleetopt.profile import PhysicalProfile  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DECODE_PARAMS = ["eta_bw", "eta_flops", "roof_p", "step_fixed_ms", "layer_us", "seq_us", "allreduce_us",
                 "alltoall_us", "p_base", "p_mem", "p_comp", "chat_prompt_tokens"]
BOUNDS = {"eta_bw": (0.3, 1.0), "eta_flops": (0.1, 1.0), "roof_p": (1.5, 20), "step_fixed_ms": (0, 10),
          "layer_us": (0, 100), "seq_us": (0, 500), "allreduce_us": (0, 100), "alltoall_us": (0, 500),
          "p_base": (0, 1), "p_mem": (0, 2), "p_comp": (0, 3), "chat_prompt_tokens": (50, 8000)}


def predict_mlenergy(cal: Calibration, rows, gpu) -> pd.DataFrame:
    out = []
    for r, m, tp, dp in rows:
        b, o = float(r["avg_batch_size"]), float(r["avg_output_len"])
        op = PhysicalProfile(m, gpu, tp, cal, dp=dp).steady_state(b, cal.chat_prompt_tokens, o)
        thr = float(r["output_throughput_tokens_per_sec"])
        out.append(dict(model=m.id, tp=tp, dp=dp, batch=round(b, 1),
                        step_ms_meas=b / thr * 1e3, step_ms_pred=op.step_ms,
                        itl_ms_meas=float(r["median_itl_ms"]), itl_ms_pred=op.decode_step_ms,
                        power_w_meas=float(r["avg_power_watts_per_gpu"]), power_w_pred=op.power_per_gpu_w,
                        j_per_tok_meas=float(r["energy_per_token_joules"]),
                        j_per_tok_pred=op.instance_power_w / op.decode_tokens_per_s))
    return pd.DataFrame(out)


def splitwise_prefill() -> pd.DataFrame:
    d = pd.read_csv(SPLITWISE)
    d = d[(d.model == "llama2-70b") & (d.hardware == "h100-80gb") & (d.batch_size == 1)]
    return d.groupby(["tensor_parallel", "prompt_size"]).prompt_time.mean().reset_index()


def predict_prefill(cal: Calibration, sw: pd.DataFrame, model, gpu) -> np.ndarray:
    return np.array([prefill_ms(model, gpu, int(r.tensor_parallel), r.prompt_size, 8192, cal) for r in sw.itertuples()])


def fit(cal: Calibration, rows, gpu, sw, llama2) -> Calibration:
    from scipy.optimize import least_squares

    def decode_res(x):
        c = cal.with_(**dict(zip(DECODE_PARAMS, x)))
        p = predict_mlenergy(c, rows, gpu)
        return np.concatenate([np.log(p.step_ms_pred / p.step_ms_meas), np.log(p.itl_ms_pred / p.itl_ms_meas),
                               np.log(p.power_w_pred / p.power_w_meas), np.log(p.j_per_tok_pred / p.j_per_tok_meas)])

    x0 = [getattr(cal, n) for n in DECODE_PARAMS]
    lb, ub = zip(*(BOUNDS[n] for n in DECODE_PARAMS))
    sol = least_squares(decode_res, x0, bounds=(lb, ub))
    cal = cal.with_(**{n: float(round(v, 4)) for n, v in zip(DECODE_PARAMS, sol.x)})
    sol = least_squares(lambda x: np.log(predict_prefill(cal.with_(eta_prefill=x[0]), sw, llama2, gpu)
                                         / sw.prompt_time.to_numpy()), [cal.eta_prefill], bounds=([0.05], [1.0]))
    return cal.with_(eta_prefill=float(round(sol.x[0], 4)))


def mape(pred, meas) -> float:
    return float(np.mean(np.abs(np.asarray(pred) / np.asarray(meas) - 1)) * 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="refit the coefficients before reporting")
    args = ap.parse_args()
    if not MLENERGY.exists():
        sys.exit(f"skipped: {MLENERGY} not found (the shared data folder is absent)")
    cat = load_catalog()
    gpu, llama2 = cat.gpu("h100"), cat.model("llama-2-70b")
    rows, sw = mlenergy_rows(cat), splitwise_prefill()
    cal = fit(DEFAULT, rows, gpu, sw, llama2) if args.fit else DEFAULT
    if args.fit:
        print("fitted:", cal)
    p = predict_mlenergy(cal, rows, gpu)
    table = p.groupby(["model", "tp", "dp"]).apply(lambda g: pd.Series({
        "runs": len(g), "power_mape_pct": mape(g.power_w_pred, g.power_w_meas),
        "itl_mape_pct": mape(g.itl_ms_pred, g.itl_ms_meas),
        "step_mape_pct": mape(g.step_ms_pred, g.step_ms_meas),
        "energy_per_token_mape_pct": mape(g.j_per_tok_pred, g.j_per_tok_meas)}), include_groups=False).reset_index()
    overall = {"power_mape_pct": mape(p.power_w_pred, p.power_w_meas), "itl_mape_pct": mape(p.itl_ms_pred, p.itl_ms_meas),
               "step_mape_pct": mape(p.step_ms_pred, p.step_ms_meas),
               "energy_per_token_mape_pct": mape(p.j_per_tok_pred, p.j_per_tok_meas)}
    pf = predict_prefill(cal, sw, llama2, gpu)
    sw = sw.assign(prefill_ms_pred=pf)
    RESULTS.mkdir(exist_ok=True)
    p.to_csv(RESULTS / "calibration_residuals.csv", index=False)
    lines = ["# Calibration residuals (physical mode, H100)", "",
             f"Source data: `{MLENERGY.name}` ({len(p)} runs of catalog models) and `{SPLITWISE.name}` "
             "(Llama-2-70B prefill, batch 1).  Produced by `python benchmarks/calibrate.py`.", "",
             "Per model and layout (tp, dp = expert-parallel data-parallel ranks), mean absolute percentage error:", "",
             table.round(1).to_markdown(index=False) if _has_tabulate() else table.round(1).to_string(index=False), "",
             "Overall: " + ", ".join(f"{k} {v:.1f}" for k, v in overall.items()), "",
             f"Splitwise H100 Llama-2-70B prefill (TP 2/4/8, 128-8192 tokens): MAPE {mape(sw.prefill_ms_pred, sw.prompt_time):.1f} %"
             " (the 2023 Splitwise stack barely speeds up from TP 4 to TP 8; decode there takes ~30 ms at any batch, "
             "so its decode times are not used: they describe a different serving stack).", "",
             "Coefficients: " + ", ".join(f"{k}={v}" for k, v in cal.__dict__.items())]
    text = "\n".join(lines) + "\n"
    (RESULTS / "calibration.md").write_text(text)
    print(text)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    main()
