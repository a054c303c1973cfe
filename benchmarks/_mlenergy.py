"""Shared loader: ML.ENERGY v3 H100 rows mapped onto catalog models and parallel layouts."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MLENERGY = DATA / "measured" / "mlenergy_v3_h100_lm_arena_chat.csv"
SPLITWISE = DATA / "measured" / "splitwise_perf_model.csv"


def mlenergy_rows(catalog):
    """(row dict, model, tp, dp) for every run whose model is in the catalog."""
    import csv

    out = []
    with open(MLENERGY) as f:
        for r in csv.DictReader(f):
            try:
                m = catalog.model(r["model_id"])
            except ValueError:
                continue
            tp, n = int(r["tensor_parallel"]), int(r["num_gpus"])
            out.append((r, m, tp, n // tp))
    return out
