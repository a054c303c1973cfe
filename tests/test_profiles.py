"""The Profile contract (``fleetopt.profiles.base.Profile``), checked on every registered
mode: what sizing, the MILP's columns and the simulator rely on, whatever the physics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleetopt.errors import FleetoptError
from fleetopt.profiles import MODES, make_profile, mode_of
from fleetopt.profiles.point import OperatingPoint

CASES = [(mode, "llama-3.1-70b", "h100", 8) for mode in MODES] + [("physical", "llama-3.1-8b", "a100", 1)]


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}x{c[3]}")
def prof(request):
    mode, model, gpu, tp = request.param
    return make_profile(mode, model, gpu, tp)


def test_the_registry_is_the_one_place_modes_are_named():
    assert set(MODES) == {"physical", "paper", "paper-computed"}
    for name, mode in MODES.items():
        assert mode.name == name and mode_of(name) is mode
    with pytest.raises(FleetoptError, match="physical"):
        mode_of("quantum")


def test_identity(prof):
    assert prof.mode in MODES and prof.tp >= 1 and prof.dp >= 1
    assert prof.gpus_per_instance == prof.tp * prof.dp
    assert isinstance(prof.chunked_prefill, bool) and isinstance(prof.calibration_label, str)
    assert prof.model.id and prof.gpu.id


def test_memory_and_concurrency(prof):
    assert prof.kv_capacity_tokens() > 0
    windows = np.array([1024.0, 4096.0, 16384.0])
    for adm in ("reserve", "paged"):
        n = np.asarray(prof.concurrency(windows, windows / 2, adm))
        assert n.shape == windows.shape and np.all(n >= 0) and np.all(np.diff(n) <= 0)   # longer: no more
        kv = np.asarray(prof.kv_concurrency(windows, windows / 2, adm))
        assert np.all(kv >= n)                                                          # the cap only lowers
        assert isinstance(prof.concurrency(4096.0, 2048.0, adm), (int, float, np.integer, np.floating))


def test_operating_points_broadcast_and_scalars_stay_scalars(prof):
    op = prof.operating_point(32.0, 2000.0)
    assert isinstance(op, OperatingPoint)
    for v in (op.step_ms, op.decode_tokens_per_s, op.power_per_gpu_w, op.instance_power_w):
        assert isinstance(v, float) and math.isfinite(v) and v > 0
    assert op.instance_power_w == pytest.approx(op.tp * op.power_per_gpu_w)
    assert op.decode_tokens_per_s == pytest.approx(32.0 / op.step_ms * 1e3)
    batch = np.array([1.0, 8.0, 64.0])
    ops = prof.operating_point(batch, np.full(3, 2000.0))
    steps = np.asarray(ops.step_ms)
    assert steps.shape == (3,) and np.all(np.diff(steps) >= 0)                 # a bigger batch steps no faster
    assert np.all(np.diff(np.asarray(ops.decode_tokens_per_s)) > 0)          # but serves more tokens
    assert np.asarray(ops.power_per_gpu_w) == pytest.approx(
        [prof.operating_point(float(b), 2000.0).power_per_gpu_w for b in batch])


def test_power_bounds(prof):
    idle = prof.idle_power_w()
    assert 0 < idle < prof.gpu.tdp_w
    p = prof.operating_point(64.0, 2000.0).power_per_gpu_w
    assert idle <= p <= prof.gpu.tdp_w * 1.0001
    assert prof.uncapped().idle_power_w() == idle


def test_prefill_and_service_times(prof):
    prompts = np.array([128.0, 1024.0, 8192.0])
    pre = np.asarray(prof.prefill_ms(prompts))
    assert pre.shape == (3,) and np.all(pre > 0) and np.all(np.diff(pre) > 0)
    assert isinstance(prof.prefill_ms(1024.0), float)
    svc = np.asarray(prof.service_ms(prompts, np.full(3, 200.0), 16.0))
    assert np.all(svc >= pre)                                                   # a slot: prefill, then decoding


def test_price_and_the_law(prof):
    assert prof.usd_per_instance_hour() > 0
    if prof.mode != "paper":                        # the published profile has its own published price
        assert prof.usd_per_instance_hour(2.0) == pytest.approx(2.0 * prof.gpus_per_instance)
    n, op = prof.saturation(8192, 512)
    assert n > 0 and op is not None and op.batch == pytest.approx(n)
    op2, j = prof.query_point(8, 1000, 200)
    assert j > 0 and math.isfinite(j) and isinstance(op2, OperatingPoint)


def test_an_impossible_instance_is_one_line():
    with pytest.raises(FleetoptError) as e:
        make_profile("physical", "llama-3.1-405b", "a100", 1)
    assert "\n" not in str(e.value)
