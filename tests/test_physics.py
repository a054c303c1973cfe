"""Physics against hand computations, closed forms and invariants."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetopt.physics import kv
from fleetopt.physics.roofline import experts_touched, step_breakdown
from fleetopt.profiles import make_profile
from fleetopt.profiles.physical import PhysicalProfile


def test_kv_bytes_llama70b(cat):
    """2 x 80 layers x 8 KV heads x 128 x 2 bytes = 327,680 B/token; TP 8 shards 8 heads."""
    m = cat.model("llama-3.1-70b")
    assert kv.kv_bytes_per_token(m) == 2 * 80 * 8 * 128 * 2 == 327_680
    assert kv.kv_bytes_per_token_per_gpu(m, 8) == 40_960
    # beyond kv_heads the heads replicate: TP 16 still holds one head per GPU
    assert kv.kv_bytes_per_token_per_gpu(m, 16) == 40_960


def test_kv_bytes_qwen3_235b_and_mla(cat):
    assert kv.kv_bytes_per_token(cat.model("qwen3-235b-a22b")) == 2 * 94 * 4 * 128 * 2
    ds = cat.model("deepseek-v3")   # MLA latent: (512 + 64) per layer, replicated over TP
    assert kv.kv_bytes_per_token(ds) == 61 * 576 * 2
    assert kv.kv_bytes_per_token_per_gpu(ds, 8) == 61 * 576 * 2


def test_weights_per_gpu(cat):
    m = cat.model("llama-3.1-70b")
    assert kv.weight_bytes_per_gpu(m, 8) == pytest.approx(m.total_params * 2 / 8)
    fp8 = cat.model("llama-3.1-405b-fp8")
    # fp8 linear layers; embeddings and LM head stay bf16: 2 x 128,256 x 16,384 parameters
    emb = 2 * 128_256 * 16_384
    assert kv.weight_bytes_per_gpu(fp8, 8) == pytest.approx(((fp8.total_params - emb) * 1 + emb * 2) / 8)


def test_kv_budget_hand(cat):
    """0.9 x HBM - weights - reserve, in 16-token blocks."""
    m, g = cat.model("llama-3.1-70b"), cat.gpu("h100")
    budget = 0.9 * g.hbm_bytes - m.total_params * 2 / 8 - kv.runtime_reserve_bytes(m, 8)
    assert kv.kv_capacity_tokens(m, g, 8) == int(budget // (40_960 * 16)) * 16


def test_concurrency_policies():
    assert kv.concurrency_reserve(1_048_576, 65_536) == 16      # the paper's 64K H100 figure
    assert kv.concurrency_reserve(1_048_576, 4_096) == 256
    # paged admission by tokens held: 1.6K-token requests fit far more than 16 in a 64K pool
    assert kv.concurrency_paged(1_048_576, 1_600, max_num_seqs=100_000) == 65_536 // (100 + 0.5)
    assert kv.concurrency_paged(1_048_576, 1_600, max_num_seqs=256) == 256


def test_experts_touched_closed_form():
    assert experts_touched(128, 8, 1) == pytest.approx(8)
    assert experts_touched(128, 8, 16) == pytest.approx(128 * (1 - (120 / 128) ** 16))
    assert experts_touched(128, 8, 10_000) == pytest.approx(128)


def test_experts_touched_whole_prompts_poisson():
    """Prefill arriving as whole prompts of U tokens, a Poisson(lambda) number per step: the
    closed form equals the explicit expectation over that number, lies below the evenly spread
    figure (Jensen) and, without prefill, is the decode-only occupancy."""
    e, k, d, u, lam = 128, 8, 8.0, 500.0, 0.03
    explicit = sum(math.exp(-lam) * lam**n / math.factorial(n) * experts_touched(e, k, d + n * u) for n in range(40))
    got = experts_touched(e, k, d + lam * u, lam * u, u)
    assert got == pytest.approx(explicit, rel=1e-9)
    assert got < experts_touched(e, k, d + lam * u)
    assert experts_touched(e, k, d, 0.0, u) == pytest.approx(experts_touched(e, k, d))


def test_moe_layer_overhead(cat):
    """moe_layer_us adds moe_layers x us to an MoE step's overhead and nothing to a dense one."""
    from fleetopt.physics.calibration import DEFAULT

    g, cal = cat.gpu("h100"), DEFAULT.with_(moe_layer_us=DEFAULT.engine.moe_layer_us + 50.0)
    moe, dense = cat.model("qwen3-30b-a3b"), cat.model("qwen3-32b")
    extra = step_breakdown(moe, g, 1, 8, 1000, cal=cal).overhead_ms - step_breakdown(moe, g, 1, 8, 1000).overhead_ms
    assert extra == pytest.approx(moe.moe_layers * 50e-3)
    assert step_breakdown(dense, g, 1, 8, 1000, cal=cal).overhead_ms == step_breakdown(dense, g, 1, 8, 1000).overhead_ms


def test_four_bit_weights_without_fp4_units_run_at_bf16(cat):
    """MXFP4/INT4 weights are weight-only (bf16 MMA) on Hopper and CDNA 3, 8-bit path on Blackwell."""
    h100, b200 = cat.gpu("h100"), cat.gpu("b200")
    assert h100.flops_for("mxfp4") == h100.bf16_flops and h100.flops_for("fp8") == h100.fp8_flops
    assert b200.flops_for("mxfp4") == b200.fp8_flops


def test_moe_streams_more_than_active_at_large_batch(cat):
    """Flaw 4: at batch 256 nearly every expert is read, so the MoE step is far above the
    active-parameter floor."""
    m, g = cat.model("qwen3-235b-a22b"), cat.gpu("h100")
    small = step_breakdown(m, g, 8, 1, 1000)
    large = step_breakdown(m, g, 8, 256, 1000)
    active_floor = m.active_params * 2 / 8
    assert small.bytes_per_gpu < 1.5 * active_floor + 1000 * 256 * 0
    assert large.bytes_per_gpu > 5 * active_floor


def test_decode_step_above_hbm_floor(cat):
    """Flaw 3: fp16 70B at TP 8 cannot step faster than 17.6 GB / 3.35 TB/s = 5.3 ms."""
    p = make_profile("physical", "llama-3.1-70b", "h100", 8)
    floor_ms = cat.model("llama-3.1-70b").total_params * 2 / 8 / 3.35e12 * 1e3
    assert p.operating_point(1, 1000).decode_step_ms > floor_ms


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 512), ctx=st.integers(64, 32_000), db=st.integers(1, 64), dctx=st.integers(1, 8000))
def test_step_monotone_and_power_bounded(cat, b, ctx, db, dctx):
    p = PhysicalProfile(cat.model("llama-3.1-8b"), cat.gpu("h100"), 1)
    a = p.operating_point(b, ctx)
    assert p.operating_point(b + db, ctx).decode_step_ms >= a.decode_step_ms
    assert p.operating_point(b, ctx + dctx).decode_step_ms >= a.decode_step_ms
    assert p.gpu.idle_w <= a.power_per_gpu_w <= p.gpu.tdp_w + 1e-9


@settings(max_examples=25, deadline=None)
@given(gpu=st.sampled_from(["h100", "h200", "b200", "a100", "mi300x"]))
def test_law_n_max_and_tpj_fall_with_window(gpu):
    from fleetopt.law import law_rows

    rows = law_rows(make_profile("physical", "llama-3.1-70b", gpu, 8), (4096, 8192, 16384, 32768, 65536))
    ns = [r["n_max"] for r in rows]
    tpj = [r["tokens_per_joule"] for r in rows]
    assert ns == sorted(ns, reverse=True)
    assert all(x > y for x, y in zip(tpj, tpj[1:]))


def test_power_cap_lowers_power_and_stretches_compute(cat):
    base = make_profile("physical", "llama-3.1-8b", "h100", 1)
    capped = make_profile("physical", "llama-3.1-8b", "h100", 1, power_cap_w=400)
    a, c = base.steady_state(256, 1000, 300), capped.steady_state(256, 1000, 300)
    assert c.power_per_gpu_w <= 400 + 1e-6 < a.power_per_gpu_w
    assert c.step_ms > a.step_ms and c.freq_scale < 1


def test_prefill_superlinear(cat):
    """Attention FLOPs grow with the context already cached: the second 4K tokens of one 8K
    prompt cost more than the first 4K (both single-chunk steps, so the per-step overheads
    cancel; comparing with two separate 4K prompts would count those overheads twice)."""
    p = make_profile("physical", "llama-3.1-70b", "h100", 8)
    assert p.prefill_ms(8192) - p.prefill_ms(4096) > p.prefill_ms(4096) - p.prefill_ms(1)
    assert p.prefill_ms(32768) > 4 * p.prefill_ms(8192)


def test_bigger_gpu_is_faster(cat):
    h = make_profile("physical", "llama-3.1-70b", "h100", 8).operating_point(64, 2000)
    b = make_profile("physical", "llama-3.1-70b", "b200", 8).operating_point(64, 2000)
    assert b.decode_step_ms < h.decode_step_ms
    assert math.isclose(h.instance_power_w, 8 * h.power_per_gpu_w)


@pytest.mark.parametrize("gpu,tp,cap,model", [("h100", 1, 400, None), ("h100", 8, 600, None), ("b200", 4, 700, None),
                                              ("a100-sxm-80gb", 2, 250, None), ("h200", 4, 350, "qwen3-235b-a22b"),
                                              ("b200", 4, 500, "qwen3-235b-a22b")])
def test_dvfs_clock_meets_the_cap(cat, gpu, tp, cap, model):
    """The clock found by the safeguarded Newton search equals the root of P(f) = cap found
    by 60 plain bisections on the same physics (independent of the search), at many points."""
    import numpy as np

    from fleetopt.physics.power import gpu_power_w
    from fleetopt.physics.roofline import step_parts

    model = model or ("llama-3.1-70b" if tp > 1 else "llama-3.1-8b")
    prof = make_profile("physical", model, gpu, tp, power_cap_w=cap)
    batch = np.array([1.0, 8, 64, 256, 512])
    kv_tok = np.array([500.0, 2000, 4000, 1000, 8000])
    pf = batch * 0.5
    _, _, _, p, f = prof._power_and_freq(batch, kv_tok, pf, kv_tok / 2)
    parts = step_parts(prof.model, prof.gpu, tp, batch, kv_tok, pf, kv_tok / 2, prof.cal, dp=prof.dp)

    energy = prof._energy(parts)

    def power(x):
        return gpu_power_w(prof.gpu, energy, parts.at(x).step_ms, prof.cal, x)

    lo, hi = np.full(5, 0.2), np.ones(5)
    for _ in range(60):
        mid = (lo + hi) / 2
        up = power(mid) > cap
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    want = np.where(power(np.ones(5)) > cap, lo, 1.0)
    assert np.allclose(f, want, rtol=0, atol=1e-5)
    assert np.all(p <= cap + 1e-6)


def test_dvfs_derivative_matches_finite_difference(cat):
    import numpy as np

    from fleetopt.physics.power import gpu_power_dfreq_w, gpu_power_w
    from fleetopt.physics.roofline import step_parts

    prof = make_profile("physical", "llama-3.1-70b", "h100", 4)
    parts = step_parts(prof.model, prof.gpu, 4, np.array([4.0, 128.0]), np.array([1000.0, 3000.0]),
                       np.array([100.0, 2000.0]), np.array([500.0, 1500.0]), prof.cal)
    energy = prof._energy(parts)
    for f in (0.4, 0.7, 0.95):
        br = parts.at(f)
        d = gpu_power_dfreq_w(prof.gpu, energy, br.step_ms, parts.dstep_df(br, f), prof.cal, f)
        h = 1e-6
        pw = lambda x: gpu_power_w(prof.gpu, energy, parts.at(x).step_ms, prof.cal, x)  # noqa: E731
        assert np.allclose(d, (pw(f + h) - pw(f - h)) / (2 * h), rtol=1e-5)


def test_sliding_window_layers_hold_at_most_their_window(cat):
    """gpt-oss-20b on one H100: half its layers keep a 128-token window.  vLLM's logged maximum
    concurrency charges a request ceil(L / 16) blocks on the full layers and, on the sliding
    ones, the window plus a prefill chunk of 8,192 tokens in blocks plus one (SlidingWindowSpec):
    by hand, blocks / (0.5 ceil(L / 16) + 0.5 (ceil(8319 / 16) + 1)) in all-layer blocks.
    Running (paged), a sliding layer keeps ceil(128 / 16) + 1 = 9 blocks.  A model without
    sliding windows is unchanged."""
    prof = PhysicalProfile(cat.model("gpt-oss-20b"), cat.gpu("h100"), 1)
    blocks = prof.kv_capacity_tokens() // 16
    for L in (131072, 16000):
        want = math.floor(blocks / (0.5 * math.ceil(L / 16) + 0.5 * (math.ceil(8319 / 16) + 1)))
        assert prof.kv_concurrency(L, 0.0) == want
        assert want > blocks // math.ceil(L / 16)                 # more than full attention everywhere
    assert kv.sliding_span_blocks(prof.model) == 9
    want_paged = min(1024, blocks // (0.5 * (2000 / 16 + 0.5) + 0.5 * 9))
    assert prof.concurrency(16384, 2000.0, "paged") == want_paged
    dense = PhysicalProfile(cat.model("llama-3.1-8b"), cat.gpu("h100"), 1)
    assert dense.kv_concurrency(16000, 0.0) == dense.kv_capacity_tokens() // (1000 * 16)
    assert kv.paged_limits(dense.model, 1e6) == (1e6, 0.0)
    cap, per_seq = kv.paged_limits(prof.model, 1e6)
    assert (cap, per_seq) == (2e6, 9 * 16)                      # f = 1/2: kv / f, (1 - f) / f x span
