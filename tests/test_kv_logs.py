"""The KV model against public vLLM start-up logs, by hand (benchmarks/kv_concurrency.py has them all)."""

import pytest

from fleetopt.physics import kv

GIB = 2**30


def test_vllm_default_batch_limits_follow_the_gpu(cat):
    """vllm/engine/arg_utils.py get_batch_defaults: 1024 seqs / 8192 server tokens on >= 70 GiB
    GPUs that are not A100s, else 256 / 2048."""
    assert kv.default_max_num_seqs(cat.gpu("h100")) == 1024
    assert kv.default_max_batched_tokens(cat.gpu("h100")) == 8192
    for gid in ("a100-sxm-80gb", "a100-sxm-40gb", "l40s"):
        assert kv.default_max_num_seqs(cat.gpu(gid)) == 256
        assert kv.default_max_batched_tokens(cat.gpu(gid)) == 2048


def test_h100_llama_3_1_8b_vllm_0_11(cat):
    """llm-d/llm-d-benchmark config_explorer/empirical-vllm-memory-results.md (vLLM 0.11.0,
    1 x H100 79.18 GiB, gmu 0.9): weights 14.99 GiB, peak activation 4.76 GiB, non-torch
    0.13 GiB, Available KV cache memory 51.38 GiB."""
    m, g = cat.model("llama-3.1-8b"), cat.gpu("h100")
    sampler = 1024 * 128_256 * 4 * kv.SAMPLER_FP32_COPIES       # 1024 dummy requests x vocab, fp32 buffers
    assert sampler / GIB == pytest.approx(4.76, rel=0.01)        # the logged peak activation
    assert kv.runtime_reserve_bytes(m, 1, gpu=g) == pytest.approx(0.15 * GIB + sampler)
    budget = 0.9 * g.hbm_bytes - m.total_params * 2 - (0.15 * GIB + sampler)
    assert kv.kv_budget_bytes(m, g, 1) == pytest.approx(budget)
    assert budget / GIB == pytest.approx(51.38, rel=0.005)
    # 2 x 32 layers x 8 KV heads x 128 x 2 B = 131,072 B per token, in 16-token blocks
    assert kv.kv_capacity_tokens(m, g, 1) == int(budget // (131_072 * 16)) * 16
    assert kv.kv_capacity_tokens(m, g, 1) == pytest.approx(51.38 * GIB / 131_072, rel=0.005)


def test_a100_40gb_llama_3_1_8b_vllm_0_15(cat):
    """github.com/ilseokoh/vllm-gce README (vLLM 0.15.1, GCE a2-highgpu-1g = 1 x A100 40GB,
    LLM() defaults, gmu 0.9): 'GPU KV cache size: 157,936 tokens'.  An A100 gets vLLM's
    256-sequence default, so the sampler warm-up holds 256 x 128,256 logits."""
    m, g = cat.model("llama-3.1-8b"), cat.gpu("a100-sxm-40gb")
    reserve = 0.15 * GIB + 256 * 128_256 * 4 * kv.SAMPLER_FP32_COPIES
    budget = 0.9 * g.hbm_bytes - m.total_params * 2 - reserve
    assert kv.kv_capacity_tokens(m, g, 1) == int(budget // (131_072 * 16)) * 16
    assert kv.kv_capacity_tokens(m, g, 1) == pytest.approx(157_936, rel=0.01)


def test_l40s_qwen3_235b_fp8_tp8_vllm_0_10(cat):
    """'Hosting Qwen3-235B-A22B-Instruct-2507-FP8 on 8xL40S' (public GitHub markdown; vLLM
    0.10.2, TP 8 + EP, gmu 0.9, 44.42 GiB per L40S): num_gpu_blocks 14,834 = 237,344 tokens.
    4 KV heads over TP 8 are replicated: 94 x 2 x 128 x 2 B = 48,128 B per token per GPU."""
    m, g = cat.model("qwen3-235b-a22b-fp8"), cat.gpu("l40s")
    assert g.hbm_bytes / GIB == pytest.approx(44.42, abs=0.005)
    assert kv.kv_bytes_per_token_per_gpu(m, 8) == 48_128
    assert kv.kv_capacity_tokens(m, g, 8) == pytest.approx(237_344, rel=0.05)


def test_b200_deepseek_r1_tp8_mla_vllm_0_18(cat):
    """github.com/ashishkamra/vllm-memory-estimator test_data/validation_db.json (commit 8b0e21d),
    record dcea7fc0: DeepSeek-R1-0528 on 8 x B200, vLLM 0.18.0, --gpu-memory-utilization 0.92,
    'Model loading took 79.88 GiB', 'GPU KV cache size: 1,219,424 tokens'.  vLLM replicates
    MLA's q_a_proj and kv_a_proj_with_mqa (61 x 7,168 x (1,536 + 512 + 64) fp8 parameters) and
    the bf16 routers (58 x 7,168 x 256) on every rank; the latent cache (61 x 576 x 2 B) too."""
    m, g = cat.model("deepseek-v3"), cat.gpu("b200")
    replicated = 61 * 7_168 * 2_112 * 1 + 58 * 7_168 * 256 * 2
    kv_b_bf16 = 61 * 512 * 128 * 256 * 2 / 8                      # dequantised kv_b_proj per rank
    base = m.moe_layers * m.experts * m.expert_params / 8 + (m.non_expert_params - m.embedding_params
                                                             - 61 * 7_168 * 2_112 - 58 * 7_168 * 256) / 8
    assert kv.weight_bytes_per_gpu(m, 8) == pytest.approx(base + m.embedding_params * 2 / 8 + replicated + kv_b_bf16)
    assert kv.weight_bytes_per_gpu(m, 8) / GIB == pytest.approx(79.88, rel=0.01)
    assert kv.kv_bytes_per_token_per_gpu(m, 8) == 61 * 576 * 2
    assert kv.kv_capacity_tokens(m, g, 8, 0.92) == pytest.approx(1_219_424, rel=0.02)


def test_rocm_moe_row_padding_by_hand(cat):
    """github.com/ashishkamra/vllm-memory-estimator validation_db.json records 46cec274 / 5d492557:
    Qwen3-235B-A22B bf16 on 4 / 8 x MI300X (ROCm vLLM 0.11.2) loads 112.6 / 56.65 GiB where the
    parameter count gives 109.5 / 54.8.  ROCm vLLM pads each 16-bit MoE weight row that is a
    multiple of 512 B by 256 B (VLLM_ROCM_MOE_PADDING): gate/up rows of 4,096 x 2 B qualify
    (94 layers x 128 experts x 2 x 1,536 / tp rows); down rows of 1,536 / tp x 2 B (768 B,
    384 B) do not.  That is 2.20 / 1.10 GiB more per GPU, on AMD only, and none for FP8."""
    m, mi, h = cat.model("qwen3-235b-a22b"), cat.gpu("mi300x"), cat.gpu("h100")
    for tp, want_gib in ((4, 2.20), (8, 1.10)):
        pad = 94 * 128 * 2 * 1_536 / tp * 256
        assert kv.rocm_moe_padding_bytes(m, tp) == pytest.approx(pad)
        assert pad / GIB == pytest.approx(want_gib, abs=0.01)
        assert kv.weight_bytes_per_gpu(m, tp, gpu=mi) - kv.weight_bytes_per_gpu(m, tp, gpu=h) == pytest.approx(pad)
    # with expert parallelism whole experts spread: down rows of 1,536 x 2 B = 3,072 B qualify too
    ep = 94 * 128 / 8 * (2 * 1_536 + 4_096) * 256
    assert kv.rocm_moe_padding_bytes(m, 4, dp=2) == pytest.approx(ep)
    assert kv.rocm_moe_padding_bytes(cat.model("qwen3-235b-a22b-fp8"), 4) == 0.0
    assert kv.rocm_moe_padding_bytes(cat.model("llama-3.1-70b"), 4) == 0.0
