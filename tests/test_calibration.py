"""The packaged coefficients against the measured H100 runs (skips without ../shared/data)."""

import sys

import pytest

from conftest import REPO, need_shared_data


def test_calibration_mape_thresholds(cat):
    need_shared_data("measured", "mlenergy_v3_h100_lm_arena_chat.csv")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _mlenergy import mlenergy_rows
    from calibrate import mape, predict_mlenergy

    from fleetopt.physics.calibration import DEFAULT

    p = predict_mlenergy(DEFAULT, mlenergy_rows(cat), cat.gpu("h100"))
    assert len(p) >= 100
    assert mape(p.power_w_pred, p.power_w_meas) <= 10.0
    assert mape(p.itl_ms_pred, p.itl_ms_meas) <= 15.0
    dense = p[p.dp == 1]
    assert mape(dense.step_ms_pred, dense.step_ms_meas) <= 12.0
