"""Workload loading, directly (``fleetopt.workload_files``, ``fleetopt.workload``): each
kind of distribution, its files, the arrival rate, mixtures and output scaling, and the
one-line errors that name a file's line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fleetopt.errors import FleetoptError
from fleetopt.instance import Workload
from fleetopt.records import convert
from fleetopt.workload import LengthDist, from_cdf, scale_output
from fleetopt.workload_files import data_files, load_workload, read_numeric_csv, read_trace, trace_rate

KNOTS = [[1000, 0.5], [4000, 0.9], [16000, 1.0]]


def wl(distribution: dict, **more) -> Workload:
    return convert({"distribution": distribution, **more}, Workload)


def test_cdf_knots_inline_and_from_a_file_agree(tmp_path: Path):
    (tmp_path / "cdf.csv").write_text("total_tokens_le,cumulative_fraction\n" +
                                      "".join(f"{t},{f}\n" for t, f in KNOTS))
    a, rate = load_workload(wl({"type": "cdf", "knots": KNOTS}, arrival_rate=50), tmp_path)
    b, _ = load_workload(wl({"type": "cdf", "path": "cdf.csv"}), tmp_path)
    assert rate == 50.0
    assert np.array_equal(a.key, b.key) and np.allclose(a.w, b.w)
    assert a.w.sum() == pytest.approx(1.0) and np.all(np.diff(a.key) >= 0)
    assert a.mean_input / (a.mean_input + a.mean_output) == pytest.approx(0.8)       # the input share
    assert a.quantile_key(0.45) < 1000 < a.quantile_key(0.6)


def test_a_bad_knot_in_a_file_names_its_line(tmp_path: Path):
    (tmp_path / "cdf.csv").write_text("total_tokens_le,cumulative_fraction\n100,0.5\n200,0.4\n300,1.0\n")
    with pytest.raises(FleetoptError) as e:
        load_workload(wl({"type": "cdf", "path": "cdf.csv"}), tmp_path)
    assert "'cdf.csv' line 3" in str(e.value) and "must not decrease" in str(e.value)


def test_histogram_cells_and_a_dataset_filter(tmp_path: Path):
    (tmp_path / "h.csv").write_text("input_bin_lo,input_bin_hi,output_bin_lo,output_bin_hi,fraction,dataset\n"
                                    "0,100,0,50,1.0,chat\n0,1000,0,500,0.5,code\n1000,2000,0,500,0.5,code\n")
    chat, _ = load_workload(wl({"type": "histogram", "path": "h.csv", "dataset": "chat"}), tmp_path)
    code, _ = load_workload(wl({"type": "histogram", "path": "h.csv", "dataset": "code", "points_per_dim": 2}),
                            tmp_path)
    assert chat.inp.max() < 100 and len(code.w) == 2 * 2 * 2
    with pytest.raises(FleetoptError, match="no rows for 'math'"):
        load_workload(wl({"type": "histogram", "path": "h.csv", "dataset": "math"}), tmp_path)


def test_a_trace_gives_its_own_rate(tmp_path: Path):
    rows = "".join(f"2024-01-01 00:00:{s:02d},{100 + s},{10 + s}\n" for s in range(0, 60, 2))
    (tmp_path / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows)
    d, rate = load_workload(wl({"type": "trace", "path": "t.csv"}, arrival_rate="trace"), tmp_path)
    assert len(d.w) == 30 and rate == pytest.approx(30 / 58, rel=0.05)
    inp, out, t = read_trace(tmp_path / "t.csv")
    assert inp[0] == 100 and out[-1] == 68 and t is not None and trace_rate(t) == pytest.approx(rate)
    with pytest.raises(FleetoptError, match="'trace' needs a trace"):
        load_workload(wl({"type": "cdf", "knots": KNOTS}, arrival_rate="trace"), tmp_path)


def test_a_mixture_blends_by_weight_and_scales_its_outputs(tmp_path: Path):
    short = {"type": "lognormal", "input_median": 200, "input_sigma": 0.5, "output_median": 100, "output_sigma": 0.5}
    mix = {"type": "mixture", "components": {
        "chat": {"weight": 0.75, "workload": short},
        "reason": {"weight": 0.25, "workload": short, "output_scale": 10}}}
    d, _ = load_workload(wl(mix), tmp_path)
    one, _ = load_workload(wl(short), tmp_path)
    assert d.mean_output == pytest.approx(0.75 * one.mean_output + 0.25 * 10 * one.mean_output, rel=1e-9)
    assert d.mean_input == pytest.approx(one.mean_input, rel=1e-9)
    twice, _ = load_workload(wl(mix, output_scale=2.0), tmp_path)
    assert twice.mean_output == pytest.approx(2 * d.mean_output, rel=1e-9)
    off = {**mix, "components": {**mix["components"], "chat": {"weight": 0, "workload": short},
                                 "reason": {"weight": 0, "workload": short}}}
    with pytest.raises(FleetoptError, match="weights must sum to 1"):   # refused when validated
        load_workload(wl(off), tmp_path)


def test_data_files_names_every_file_a_workload_reads():
    mix = {"type": "mixture", "components": {
        "a": {"weight": 0.5, "workload": {"type": "cdf", "path": "a.csv"}},
        "b": {"weight": 0.5, "workload": {"type": "lognormal", "input_median": 1, "input_sigma": 0,
                                          "output_median": 1, "output_sigma": 0}}}}
    assert data_files(wl(mix)) == [("a", "a.csv")]
    assert data_files(wl({"type": "trace", "path": "t.csv"})) == [(None, "t.csv")]


def test_routing_keys_and_output_scaling():
    d = from_cdf([(100.0, 1.0)], 0.5, routing_key="input")
    assert np.allclose(d.key, d.inp)
    capped = LengthDist.build([100, 100], [50, 500], [1, 1], "input_plus_max_output", 200)
    assert np.allclose(capped.key, [300, 300]) and capped.out.max() == 200
    s = scale_output(capped, 3.0, "input_plus_max_output", 200)
    assert s.out.max() == 200 and s.out.min() == 150
    with pytest.raises(FleetoptError, match="max_output_tokens: required"):
        LengthDist.build([1], [1], [1], "input_plus_max_output")


def test_numeric_csv_errors_name_the_column_and_line(tmp_path: Path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(FleetoptError) as e:
        read_numeric_csv(p, ["a", "b"], "f.path")
    assert "line 3" in str(e.value)
    with pytest.raises(FleetoptError, match="no column 'c'"):
        read_numeric_csv(p, ["a", "c"], "f.path")
    with pytest.raises(FleetoptError, match="no such file"):
        load_workload(wl({"type": "cdf", "path": "nowhere.csv"}), tmp_path)
