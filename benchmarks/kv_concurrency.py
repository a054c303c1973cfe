"""KV cache capacity against public vLLM start-up logs (the fidelity bar: KV concurrency within
5 % of vLLM's logged figure).

vLLM logs at start-up ``Model loading took X GiB``, ``Available KV cache memory: Y GiB`` and
``GPU KV cache size: N tokens`` (V1; V0 printed ``# GPU blocks: N`` of 16 tokens), and from
0.10 a ``Free memory on device ... Actual usage is ... for weight, ... for peak activation,
... for non-torch memory`` line.  ``LOGS`` holds every public log found with a known GPU,
model in the catalog, TP, gpu_memory_utilization and vLLM version (sources and settings per
row); ``LOGGED_KV`` the earlier pair from other engines / an LMCache connector (not scored).

Each row: logged KV tokens against ``fleetopt.physics.kv`` (the row's max_num_seqs and
max_num_batched_tokens, vLLM's defaults unless the log says otherwise), and the
decomposition: weights per GPU predicted against logged, reserve predicted against implied
(gmu x HBM - logged weights - logged KV bytes).  The sampler term of the reserve has one
fitted coefficient (``SAMPLER_FP32_COPIES``): the first rows alternate, in the order found,
between a held-in half (the fit: rows logging the peak activation) and a held-out half; the
validation-set rows (``VDB``) came after the coefficient was fixed and are all held out.

    python benchmarks/kv_concurrency.py   # writes benchmarks/results/kv_concurrency.md and .json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GIB = 2**30

#: A public validation set of vLLM start-up logs (RedHat AI and upstream builds, explicit
#: accelerator, TP, --gpu-memory-utilization 0.92, --max-model-len 8192), one record per row.
VDB = ("https://github.com/ashishkamra/vllm-memory-estimator/blob/8b0e21d1ec49357383758a164129515209b37e7f/"
       "test_data/validation_db.json")

#: Public vLLM logs, in the order found; ``split`` alternates held-in ("in", used to fit the
#: sampler coefficient) and held-out ("out").  Figures are the log's own; settings the
#: command line's or vLLM's defaults for that GPU and entry point (noted).  ``scored`` False:
#: shown, not counted (the V0 engine profiled differently).
LOGS = [
    dict(id="a100-40-llama8b-eager", gpu="a100-sxm-40gb", model="llama-3.1-8b", tp=1, gmu=0.9,
         vllm="0.15.1 (V1, offline LLM, enforce_eager)", max_num_seqs=256, max_batched_tokens=8192,
         max_model_len=131072, logged_tokens=157_936, logged_kv_gib=19.28, logged_weights_gib=14.99,
         split="in", source="https://github.com/ilseokoh/vllm-gce (README.md, test.py output)",
         note="GCE a2-highgpu-1g = 1 x A100 40GB; LLM(model) defaults: gmu 0.9, 256 seqs (A100), 8192 batched tokens (logged)"),
    dict(id="h100-gpt-oss-20b", gpu="h100-sxm", model="gpt-oss-20b", tp=1, gmu=0.9,
         vllm="0.11.0 (V1, serve)", max_num_seqs=1024, max_batched_tokens=8192, max_model_len=16000,
         logged_kv_gib=50.28, logged_weights_gib=13.47, logged_activation_gib=7.38, logged_non_torch_gib=0.13,
         split="out", source="https://github.com/llm-d/llm-d-benchmark/blob/main/config_explorer/empirical-vllm-memory-results.md",
         note="KV logged in GiB only (sliding-window layers: tokens not comparable, compared as full-attention tokens of the same bytes); H100 79.18 GiB"),
    dict(id="h100-gpt-oss-120b", gpu="h100-sxm", model="gpt-oss-120b", tp=1, gmu=0.9,
         vllm="0.11.0 (V1, serve)", max_num_seqs=1024, max_batched_tokens=8192, max_model_len=16000,
         logged_kv_gib=3.33, logged_weights_gib=64.38, logged_activation_gib=7.38, logged_non_torch_gib=0.13,
         split="in", source="https://github.com/llm-d/llm-d-benchmark/blob/main/config_explorer/empirical-vllm-memory-results.md",
         note="KV logged in GiB only; MXFP4 weights logged 64.38 GiB vs the catalog's blended 4.25-bit estimate"),
    dict(id="h100-llama8b", gpu="h100-sxm", model="llama-3.1-8b", tp=1, gmu=0.9,
         vllm="0.11.0 (V1, serve)", max_num_seqs=1024, max_batched_tokens=8192, max_model_len=16000,
         logged_kv_gib=51.38, logged_weights_gib=14.99, logged_activation_gib=4.76, logged_non_torch_gib=0.13,
         split="out", source="https://github.com/llm-d/llm-d-benchmark/blob/main/config_explorer/empirical-vllm-memory-results.md",
         note="--block-size 128 --enable-prefix-caching; KV logged in GiB"),
    dict(id="h100-qwen3-32b-tp1", gpu="h100-sxm", model="qwen3-32b", tp=1, gmu=0.9,
         vllm="0.11.0 (V1, serve)", max_num_seqs=1024, max_batched_tokens=8192, max_model_len=16000,
         logged_kv_gib=4.45, logged_weights_gib=61.03, logged_activation_gib=5.64, logged_non_torch_gib=0.14,
         split="in", source="https://github.com/llm-d/llm-d-benchmark/blob/main/config_explorer/empirical-vllm-memory-results.md",
         note="--block-size 128; KV logged in GiB"),
    dict(id="h100-qwen3-32b-tp2", gpu="h100-sxm", model="qwen3-32b", tp=2, gmu=0.9,
         vllm="0.11.0 (V1, serve)", max_num_seqs=1024, max_batched_tokens=8192, max_model_len=16000,
         logged_kv_gib=34.49, logged_weights_gib=30.59, logged_activation_gib=5.64, logged_non_torch_gib=0.54,
         split="out", source="https://github.com/llm-d/llm-d-benchmark/blob/main/config_explorer/empirical-vllm-memory-results.md",
         note="--block-size 128; KV logged in GiB (per GPU)"),
    dict(id="a100-80-llama8b", gpu="a100-sxm-80gb", model="llama-3.1-8b", tp=1, gmu=0.92,
         vllm="0.31.0 (V1, serve; docker vllm/vllm-openai:v0.31.0)", max_num_seqs=256, max_batched_tokens=2048,
         max_model_len=131072, logged_tokens=460_496, logged_kv_gib=56.21, logged_weights_gib=15.0,
         logged_activation_gib=1.44, logged_non_torch_gib=0.26, split="in",
         source="public GitHub notes 'Session 2 ... Card used: A100 80GB' (search index file 70682754770; repository not named by the index)",
         note="no flags: gmu 0.92 is that version's default (logged 'Desired GPU memory utilization is (0.92, 72.91 GiB)'); 79.25 GiB"),
    dict(id="l40s-qwen3-235b-fp8-tp8", gpu="l40s", model="qwen3-235b-a22b-fp8", tp=8, gmu=0.9,
         vllm="0.10.2 (V1, serve, --enable-expert-parallel)", max_num_seqs=256, max_batched_tokens=2048,
         max_model_len=32768, logged_tokens=237_344, logged_kv_gib=10.65, logged_weights_gib=27.72,
         logged_activation_gib=1.40, logged_non_torch_gib=0.21, split="out",
         source="public GitHub markdown 'Hosting Qwen3-235B-A22B-Instruct-2507-FP8 on 8xL40S' (search index file 38962983769; repository not named)",
         note="log shows TP 8 + EP 8 (16/128 experts per GPU); num_gpu_blocks 14,834 x 16 (the smallest worker); custom all-reduce off (PCIe)"),
    dict(id="l40s-qwen3-14b", gpu="l40s", model="qwen3-14b", tp=1, gmu=0.92,
         vllm="0.28.0 (V1, serve)", max_num_seqs=256, max_batched_tokens=2048, max_model_len=40960,
         logged_tokens=75_824, logged_kv_gib=11.57, logged_weights_gib=27.52, split="in",
         source="public blog post 'LLM 최적화 실전 프로젝트' (jinwoong, 2026-09-06; search index file 60168338778), after O'Reilly Hands-On LLM Serving and Optimization ch. 9",
         note="AWS g6e.2xlarge (L40S 46,068 MiB); 'vllm serve Qwen/Qwen3-14B --disable-log-stats': gmu is that version's default, 0.92 as vLLM 0.31 logs it (0.9 would leave 0.89 GiB, less than the logged-elsewhere 1.4 GiB sampler peak)"),
    dict(id="h200-deepseek-r1-tp8", gpu="h200", model="deepseek-v3", tp=8, gmu=0.92,
         vllm="0.11.2 (V1, serve)", max_num_seqs=1024, max_batched_tokens=8192, max_model_len=8192,
         logged_tokens=635_648, logged_kv_gib=41.60, logged_weights_gib=79.739, split="out",
         source=VDB + " record 88e492a0",
         note="deepseek-ai/DeepSeek-R1-0528 (DeepSeek-V3 architecture; MLA latent 61 x 576 x 2 B = 70,272 B per token per GPU = 41.60 GiB / 635,648), fp8 weights, --gpu-memory-utilization 0.92"),
    dict(id="h100-llama70b-fp8-tp2", gpu="h100-sxm", model="llama-3.3-70b-fp8", tp=2, gmu=0.9,
         vllm="0.11.0 (V1, serve)", max_num_seqs=1024, max_batched_tokens=8192, max_model_len=16000,
         logged_kv_gib=32.0, logged_weights_gib=33.88, logged_activation_gib=4.84, logged_non_torch_gib=0.55,
         split="in", source="https://github.com/llm-d/llm-d-benchmark/blob/main/config_explorer/empirical-vllm-memory-results.md",
         note="RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic; --block-size 128; KV logged in GiB (per GPU)"),
    dict(id="h200-llama70b-fp8-tp4", gpu="h200", model="llama-3.3-70b-fp8", tp=4, gmu=0.92,
         vllm="0.11.2 (V1, serve)", max_num_seqs=1024, max_batched_tokens=8192, max_model_len=8192,
         logged_tokens=1_391_344, logged_kv_gib=106.15, logged_weights_gib=16.9619, split="out",
         source=VDB + " record f2961598", note="RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic, --gpu-memory-utilization 0.92"),
    # vllm-memory-estimator validation DB (all held out: added after the sampler coefficient was fixed)
    dict(id="h200-llama70b-tp4", gpu="h200", model="llama-3.1-70b", tp=4, gmu=0.92, vllm="0.19.0 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=1_200_192, logged_kv_gib=91.57, logged_weights_gib=32.89,
         split="out", source=VDB + " record fdcab9a9", note="meta-llama/Llama-3.3-70B-Instruct, --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="h200-llama70b-fp8-tp4-fp8kv", gpu="h200", model="llama-3.3-70b-fp8", tp=4, gmu=0.92, kv_dtype="fp8", vllm="0.19.0 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=2_818_496, logged_kv_gib=107.52, logged_weights_gib=16.96,
         split="out", source=VDB + " record d36ce1c6", note="RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic, --kv-cache-dtype fp8, --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="h200-qwen3-235b-tp4", gpu="h200", model="qwen3-235b-a22b", tp=4, gmu=0.92, vllm="0.11.2 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=284_080, logged_kv_gib=12.73, logged_weights_gib=109.6068,
         split="out", source=VDB + " record ae4a7e0e", note="Qwen/Qwen3-235B-A22B-Instruct-2507, --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="h200-qwen3-235b-fp8-tp4", gpu="h200", model="qwen3-235b-a22b-fp8", tp=4, gmu=0.92, vllm="0.11.2 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=1_475_472, logged_kv_gib=66.13, logged_weights_gib=55.2032,
         split="out", source=VDB + " record 049928ed", note="RedHatAI/Qwen3-235B-A22B-FP8-dynamic (per-channel FP8; the catalog entry is Qwen's block FP8), --enable-expert-parallel, --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="h200-deepseek-r1-tp8-v0.19", gpu="h200", model="deepseek-v3", tp=8, gmu=0.92, vllm="0.19.0 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=653_808, logged_kv_gib=42.79, logged_weights_gib=79.74,
         split="out", source=VDB + " record 94e7cdb0", note="deepseek-ai/DeepSeek-R1-0528, --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="b200-llama70b-tp4", gpu="b200", model="llama-3.1-70b", tp=4, gmu=0.92, vllm="0.18.0 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=1_664_848, logged_kv_gib=127.02, logged_weights_gib=32.89,
         split="out", source=VDB + " record b421cf24", note="meta-llama/Llama-3.3-70B-Instruct, --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="b200-llama70b-fp8-tp4-fp8kv", gpu="b200", model="llama-3.3-70b-fp8", tp=4, gmu=0.92, kv_dtype="fp8", vllm="0.18.0 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=3_747_120, logged_kv_gib=142.94, logged_weights_gib=16.96,
         split="out", source=VDB + " record 4f6e745d", note="RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic, --kv-cache-dtype fp8, --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="b200-deepseek-r1-tp8", gpu="b200", model="deepseek-v3", tp=8, gmu=0.92, vllm="0.18.0 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=1_219_424, logged_kv_gib=79.81, logged_weights_gib=79.88,
         split="out", source=VDB + " record dcea7fc0", note="deepseek-ai/DeepSeek-R1-0528, --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="mi300x-llama70b-tp1", gpu="mi300x", model="llama-3.1-70b", tp=1, gmu=0.92, vllm="0.18.0+rhaiv.0 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=137_232, logged_kv_gib=41.88, logged_weights_gib=131.62,
         split="out", source=VDB + " record 9a0b6d4e", note="meta-llama/Llama-3.3-70B-Instruct (ROCm), --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="mi300x-llama70b-tp4", gpu="mi300x", model="llama-3.1-70b", tp=4, gmu=0.92, vllm="0.13.1.dev8 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=1_846_048, logged_kv_gib=140.86, logged_weights_gib=32.9629,
         split="out", source=VDB + " record 9e6c1f39", note="meta-llama/Llama-3.3-70B-Instruct (ROCm), --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="mi300x-llama70b-fp8-tp1", gpu="mi300x", model="llama-3.3-70b-fp8", tp=1, gmu=0.92, vllm="0.11.2+rhai1 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=334_864, logged_kv_gib=102.19, logged_weights_gib=68.3613,
         split="out", source=VDB + " record 95cac1c3", note="RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic (ROCm), --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="mi300x-llama70b-fp8-tp1-fp8kv", gpu="mi300x", model="llama-3.3-70b-fp8", tp=1, gmu=0.92, kv_dtype="fp8", vllm="0.18.0+rhaiv.0 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=688_064, logged_kv_gib=104.99, logged_weights_gib=68.37,
         split="out", source=VDB + " record b315d677", note="RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic, --kv-cache-dtype fp8 (ROCm), --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="mi300x-qwen3-235b-tp4", gpu="mi300x", model="qwen3-235b-a22b", tp=4, gmu=0.92, vllm="0.11.2+rhai1 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=1_267_456, logged_kv_gib=56.83, logged_weights_gib=112.6113,
         split="out", source=VDB + " record 46cec274", note="Qwen/Qwen3-235B-A22B-Instruct-2507 (ROCm), --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="mi300x-qwen3-235b-tp8", gpu="mi300x", model="qwen3-235b-a22b", tp=8, gmu=0.92, vllm="0.11.2+rhai1 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=2_468_368, logged_kv_gib=111.06, logged_weights_gib=56.6465,
         split="out", source=VDB + " record 5d492557", note="Qwen/Qwen3-235B-A22B-Instruct-2507 (ROCm), --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="mi300x-qwen3-235b-fp8-tp4", gpu="mi300x", model="qwen3-235b-a22b-fp8", tp=4, gmu=0.92, vllm="0.11.2+rhai1 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=2_528_512, logged_kv_gib=113.35, logged_weights_gib=55.9199,
         split="out", source=VDB + " record c6b429bc", note="RedHatAI/Qwen3-235B-A22B-FP8-dynamic, --enable-expert-parallel (ROCm), --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="mi300x-qwen3-235b-fp8-tp8", gpu="mi300x", model="qwen3-235b-a22b-fp8", tp=8, gmu=0.92, vllm="0.11.2+rhai1 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=3_102_816, logged_kv_gib=139.5, logged_weights_gib=28.041,
         split="out", source=VDB + " record ea27031b", note="RedHatAI/Qwen3-235B-A22B-FP8-dynamic, --enable-expert-parallel (ROCm), --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="mi300x-deepseek-r1-tp8", gpu="mi300x", model="deepseek-v3", tp=8, gmu=0.92, vllm="0.18.0+rhaiv.0 (V1, serve)", max_num_seqs=1024,
         max_batched_tokens=8192, max_model_len=8192, logged_tokens=1_338_112, logged_kv_gib=88.0, logged_weights_gib=81.31,
         split="out", source=VDB + " record e8d9fc5d", note="deepseek-ai/DeepSeek-R1-0528 (ROCm), --gpu-memory-utilization 0.92, --max-model-len 8192"),
    dict(id="a100-40-llama3-8b-v0", gpu="a100-sxm-40gb", model="llama-3-8b", tp=1, gmu=0.9,
         vllm="~0.6.6 (V0 engine, serve)", max_num_seqs=256, max_batched_tokens=8192, max_model_len=8192,
         logged_tokens=91_056, logged_kv_gib=11.12, logged_weights_gib=14.96, logged_activation_gib=9.37,
         logged_non_torch_gib=0.10, split="-", scored=False,
         source="https://github.com/vllm-project/vllm/issues/12330",
         note="V0: '# GPU blocks: 5691'; no chunked prefill (8192-token dummy batch); its 9.37 GiB activation peak is V0's profiler, not V1's"),
]

#: Public logs of a serving engine's KV cache size with a known GPU, model and TP (source, note).
LOGGED_KV = [
    dict(gpu="h100", model="qwen3-235b-a22b-fp8", tp=4, engine="vLLM ~0.9 (with an LMCache connector)",
         logged_tokens=178_880, source="github.com/vllm-project/vllm/issues/21348",
         note="SGLang on the same 4 x H100 allocated 367,404 tokens (16.5 GB of K and V)"),
    dict(gpu="h100", model="qwen3-235b-a22b-fp8", tp=4, engine="SGLang (mem-fraction-static 0.93)",
         logged_tokens=367_404, source="github.com/vllm-project/vllm/issues/21348", note="gpu_memory_utilization 0.93",
         gmu=0.93),
]


def evaluate(cat) -> list[dict]:
    """One row per log in ``LOGS``: logged and predicted KV tokens and the decomposition
    (GiB per GPU)."""
    import msgspec

    from fleetopt.physics import kv

    out = []
    for r in LOGS:
        m, g, tp, gmu = cat.model(r["model"]), cat.gpu(r["gpu"]), r["tp"], r["gmu"]
        if "kv_dtype" in r:                                   # --kv-cache-dtype
            m = msgspec.structs.replace(m, kv_dtype=r["kv_dtype"])
        reserve = kv.runtime_reserve_bytes(m, tp, r["max_batched_tokens"], r["max_num_seqs"], gpu=g)
        pred_tokens = kv.kv_capacity_tokens(m, g, tp, gmu, reserve_bytes=reserve)
        per_token = kv.kv_bytes_per_token_per_gpu(m, tp)
        logged_tokens = r.get("logged_tokens") or int(r["logged_kv_gib"] * GIB // (per_token * 16)) * 16
        weights = kv.weight_bytes_per_gpu(m, tp, gpu=g)
        sampler = r["max_num_seqs"] * m.vocab * 4
        out.append({
            "log": r["id"], "split": r["split"], "gpu": r["gpu"], "tp": tp, "model": r["model"], "gmu": gmu,
            "kv_dtype": m.kv_dtype,
            "vllm": r["vllm"], "seqs": r["max_num_seqs"], "batched": r["max_batched_tokens"],
            "logged_tokens": logged_tokens, "tokens_from_gib": "logged_tokens" not in r,
            "predicted_tokens": pred_tokens, "error_pct": round(100 * (pred_tokens / logged_tokens - 1), 1),
            "weights_gib": round(weights / GIB, 2), "logged_weights_gib": r["logged_weights_gib"],
            "reserve_gib": round(reserve / GIB, 2),
            "implied_reserve_gib": round(gmu * g.hbm_bytes / GIB - r["logged_weights_gib"] - r["logged_kv_gib"], 2),
            "logged_activation_gib": r.get("logged_activation_gib"), "logged_non_torch_gib": r.get("logged_non_torch_gib"),
            "sampler_unit_gib": round(sampler / GIB, 4), "scored": r.get("scored", True),
            "source": r["source"], "note": r["note"]})
    return out


def fit_sampler_copies(rows: list[dict]) -> float:
    """Least-squares c in logged peak activation = c x seqs x vocab x 4 B over the held-in
    rows that log the activation (through the origin)."""
    pts = [(r["sampler_unit_gib"], r["logged_activation_gib"]) for r in rows
           if r["split"] == "in" and r["scored"] and r["logged_activation_gib"] is not None]
    return sum(x * y for x, y in pts) / sum(x * x for x, _ in pts)


def summary(rows: list[dict]) -> dict:
    """Mean and largest absolute error and rows within 5 % per split (scored rows)."""
    out = {}
    for name, keep in (("held_in", "in"), ("held_out", "out"), ("all", None)):
        errs = [abs(r["error_pct"]) for r in rows if r["scored"] and keep in (None, r["split"])]
        out[name] = {"rows": len(errs), "mean_abs_error_pct": round(sum(errs) / len(errs), 1),
                     "max_abs_error_pct": max(errs), "within_5pct": sum(e <= 5 for e in errs)}
    return out


def _logged_kv(cat) -> str:
    """Markdown table: predicted KV cache tokens against the public vLLM logs in ``LOGS``
    and the other engines' logs in ``LOGGED_KV``."""
    from fleetopt.physics.kv import kv_capacity_tokens

    lines = ["| GPU x TP | model | engine | logged tokens | predicted | error | source |", "|---|---|---|---:|---:|---:|---|"]
    for r in evaluate(cat):
        approx = " (from GiB)" if r["tokens_from_gib"] else ""
        scored = "" if r["scored"] else ", not scored"
        lines.append(f"| {r['gpu']} x {r['tp']} | {r['model']} | vLLM {r['vllm']}{scored} | {r['logged_tokens']:,}{approx} | "
                     f"{r['predicted_tokens']:,} | {r['error_pct']:+.1f} % | {r['source']} |")
    for r in LOGGED_KV:
        pred = kv_capacity_tokens(cat.model(r["model"]), cat.gpu(r["gpu"]), r["tp"], r.get("gmu", 0.9))
        lines.append(f"| {r['gpu']} x {r['tp']} | {r['model']} | {r['engine']}, not scored | {r['logged_tokens']:,} | {pred:,} | "
                     f"{(pred / r['logged_tokens'] - 1) * 100:+.0f} % | {r['source']} ({r['note']}) |")
    return "\n".join(lines)


def sliding_window_rows(cat) -> list[dict]:
    """Maximum concurrency (vLLM's logged figure) of the sliding-window models on one GPU at
    two request lengths: with the hybrid allocator's window spans (fleetopt) against every
    layer holding the whole request (what fleetopt assumed before)."""
    from fleetopt.physics import kv
    from fleetopt.profiles.physical import PhysicalProfile

    rows = []
    for model, gpu, tp in (("gpt-oss-20b", "h100", 1), ("gpt-oss-120b", "h100", 1), ("gpt-oss-120b", "h200", 1)):
        prof = PhysicalProfile(cat.model(model), cat.gpu(gpu), tp)
        blocks = prof.kv_capacity_tokens() // kv.BLOCK_TOKENS
        for tokens in (131072, 16000):
            rows.append({"model": model, "gpu": prof.gpu.id, "tp": tp, "request_tokens": tokens,
                         "sliding_span_blocks": kv.sliding_span_blocks(prof.model, prof.chunk_tokens),
                         "max_concurrency": int(prof.kv_concurrency(tokens, 0.0)),
                         "full_attention_everywhere": int(blocks // -(-tokens // kv.BLOCK_TOKENS))})
    return rows


def main() -> None:
    from fleetopt.atomic import write_atomic
    from fleetopt.catalog import load_catalog
    from fleetopt.physics.kv import SAMPLER_FP32_COPIES
    from fleetopt.render import table, to_json

    from _results import RESULTS, publish

    cat = load_catalog()
    rows = evaluate(cat)
    fitted = fit_sampler_copies(rows)
    stats = summary(rows)
    show = [{k: r[k] for k in ("log", "split", "gpu", "tp", "model", "kv_dtype", "gmu", "seqs", "logged_tokens",
                                "predicted_tokens", "error_pct", "weights_gib", "logged_weights_gib",
                                "reserve_gib", "implied_reserve_gib", "logged_activation_gib")} for r in rows]
    for s in show:
        s["logged_activation_gib"] = "-" if s["logged_activation_gib"] is None else s["logged_activation_gib"]
        s["error_pct"] = f"{s['error_pct']:+.1f}"
    text = "\n\n".join([
        "KV cache capacity against public vLLM start-up logs (benchmarks/kv_concurrency.py)\n"
        "tokens: the instance's KV pool (vLLM 'GPU KV cache size'; '# GPU blocks' x 16 for V0; rows logging only\n"
        "'Available KV cache memory' converted at the catalog's bytes per token).  GiB per GPU.  reserve = fleetopt's\n"
        "non-torch + max(one chunk's forward, sampler warm-up); implied = gmu x HBM - logged weights - logged KV.",
        table(show, "Per log (split: 'in' fits the sampler coefficient, 'out' checks it; '-' not scored)"),
        table([{"split": k, **v} for k, v in stats.items()], "Absolute error of predicted tokens, scored rows"),
        f"Sampler coefficient: least squares on the held-in rows' logged peak activation = {fitted:.2f} fp32 copies "
        f"of seqs x vocab; kv.SAMPLER_FP32_COPIES = {SAMPLER_FP32_COPIES:g}.",
        "Sources:\n" + "\n".join(f"  {r['log']}: {r['source']} -- {r['note']}" for r in rows),
        table(sliding_window_rows(cat), "Sliding-window models: vLLM's maximum concurrency with the hybrid "
              "allocator's window spans (a prefill chunk on top of the window) against every layer holding the "
              "whole request"),
        "Other engines and connectors (not scored):\n" + "\n".join(
            f"  {r['gpu']} x {r['tp']} {r['model']}, {r['engine']}: {r['logged_tokens']:,} tokens ({r['source']}; {r['note']})"
            for r in LOGGED_KV),
    ])
    publish("kv_concurrency", text)
    write_atomic(RESULTS / "kv_concurrency.json",
                 to_json({"rows": rows, "summary": stats, "sampler_fp32_copies_fitted": round(fitted, 3),
                          "sampler_fp32_copies": SAMPLER_FP32_COPIES, "other_engines": LOGGED_KV}) + "\n")


if __name__ == "__main__":
    main()
