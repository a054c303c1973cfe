"""Erlang-C and the M/G/c tail against closed forms and a brute-force M/M/c simulation."""

import math

import numpy as np
import pytest

from fleetopt.queueing import erlang_c, log_erlang_c, wait_quantile_mgc


def erlang_c_direct(c, a):
    """Textbook formula in exact rational arithmetic (small c)."""
    from fractions import Fraction

    a = Fraction(a)
    terms = [a**k / math.factorial(k) for k in range(c)]
    last = a**c / math.factorial(c) * Fraction(c) / (c - a)
    return float(last / (sum(terms) + last))


@pytest.mark.parametrize("c,a", [(1, 0.5), (2, 1), (5, 3.2), (10, 8), (40, 35), (100, 90)])
def test_erlang_c_matches_textbook(c, a):
    assert erlang_c(c, a) == pytest.approx(erlang_c_direct(c, a), rel=1e-9)


def test_erlang_c_mm1_and_two_servers():
    assert erlang_c(1, 0.7) == pytest.approx(0.7)        # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)      # hand: (1/2 * 2) / (1 + 1 + 1) = 1/3


def test_erlang_c_stable_at_a_million_servers():
    c = 1_000_000
    for rho in (0.5, 0.99, 0.999):
        v = log_erlang_c(c, rho * c)
        assert math.isfinite(v) and v <= 0
    # Halfin-Whitt: with beta = (c - a)/sqrt(a) fixed, C tends to a constant as c grows
    beta = 0.5
    vals = [erlang_c(n, n - beta * math.sqrt(n)) for n in (10_000, 1_000_000)]
    assert vals[0] == pytest.approx(vals[1], rel=0.02)


def simulate_mmc_wait_p99(c, lam, mu, n=200_000, seed=1):
    """Brute-force FCFS M/M/c: each arrival takes the earliest-free server."""
    import heapq

    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(1 / lam, n))
    svc = rng.exponential(1 / mu, n)
    free = [0.0] * c
    waits = np.empty(n)
    for i in range(n):
        t0 = heapq.heappop(free)
        start = max(t0, arr[i])
        waits[i] = start - arr[i]
        heapq.heappush(free, start + svc[i])
    w = waits[n // 10:]
    return float(np.quantile(w, 0.99)), float((w > 0).mean())


@pytest.mark.parametrize("c,rho", [(4, 0.8), (16, 0.85)])
def test_p99_wait_against_simulation(c, rho):
    """For exponential service (cv^2 = 1) Kimura's formula is the exact M/M/c quantile
    ln(C/0.01)/(c mu - lambda); the simulation agrees within sampling error."""
    mu = 1.0
    lam = rho * c * mu
    sim_q, sim_pw = simulate_mmc_wait_p99(c, lam, mu, n=600_000, seed=3)
    assert sim_pw == pytest.approx(erlang_c(c, lam / mu), abs=0.02)
    assert wait_quantile_mgc(c, lam, 1 / mu, 1.0) == pytest.approx(sim_q, rel=0.10)


def test_deterministic_service_halves_the_wait():
    """(1 + cv^2)/2: M/D/c waits about half of M/M/c in heavy traffic."""
    assert wait_quantile_mgc(8, 7.5, 1.0, 0.0) == pytest.approx(0.5 * wait_quantile_mgc(8, 7.5, 1.0, 1.0))


def test_unstable_queue_is_infinite():
    assert wait_quantile_mgc(4, 5.0, 1.0, 1.0) == math.inf
