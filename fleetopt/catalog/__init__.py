"""GPU and model catalogs: packaged YAML loaded into validated, typed objects.

Ids are case-insensitive and have aliases (``H100`` = ``h100-sxm``).  A user adds or
overrides entries with their own YAML file of the same shape (``gpus:`` and/or
``models:`` lists), given by ``--catalog FILE`` or the ``FLEETOPT_CATALOG`` environment
variable (several files separated by ``os.pathsep``); an entry whose ``id`` matches an
existing one replaces it field by field.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from fleetopt.errors import FleetoptError
from fleetopt.files import parse_yaml, read_yaml_mapping
from fleetopt.records import Frozen, NonNeg, NonNegInt, Pos, PosInt, Record, convert

R = TypeVar("R")

#: Bytes per stored element for each dtype name; mxfp4 is 4-bit values plus one 8-bit scale
#: per 32 (OCP Microscaling spec v1.0), i.e. 4.25 bits.
DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0,
                                 "mxfp4": 4.25 / 8, "int4": 0.5}

Dtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "mxfp4", "int4"]


Vendor = Literal["nvidia", "amd", "other"]


class Gpu(Frozen, frozen=True, kw_only=True):
    """One accelerator type.  Units in field names; see gpus.yaml for the sources.

    The energy fields (``mem_pj_per_bit``, ``link_pj_per_bit``) and ``memory_type``,
    ``process_nm``, ``vendor`` default to values that keep a user catalog written before
    they existed loadable: an HBM3-class memory energy, a board-level SerDes link energy,
    an unstated process node (0) and vendor "nvidia"."""

    id: str
    aliases: tuple[str, ...] = ()
    name: str = ""
    vendor: Vendor = "nvidia"
    """maker; lets physics apply a per-vendor software-efficiency factor (ROCm vs CUDA)"""
    hbm_bytes: Pos
    """usable device memory, bytes"""
    mem_bw_bytes_s: Pos
    """peak memory bandwidth, bytes/s"""
    bf16_flops: Pos
    """dense bf16 tensor FLOP/s"""
    fp8_flops: NonNeg
    """dense fp8 tensor FLOP/s (0 = none)"""
    tdp_w: Pos
    """board power limit, W"""
    idle_w: NonNeg
    """power of an idle GPU holding the serving process (CUDA/HIP context up, weights
    loaded, clocks up, no kernels running), W"""
    link_gb_s: Pos
    """per-direction scale-up bandwidth per GPU, GB/s"""
    usd_per_gpu_hour: NonNeg
    """default price, $ per GPU-hour"""
    memory_type: str = "unknown"
    """device memory technology ("hbm2", "hbm2e", "hbm3", "hbm3e", "gddr6"); documents mem_pj_per_bit"""
    mem_pj_per_bit: Pos = 3.9
    """device-memory energy per bit moved, pJ/bit: DRAM array + on-stack movement + interface,
    device level (the per-generation table at the top of gpus.yaml); default: HBM3-class"""
    link_pj_per_bit: Pos = 5.5
    """scale-up link energy per bit crossing the link (both SerDes ends, GPU side; switch
    power excluded), pJ/bit; default: board-level SerDes class (gpus.yaml)"""
    fp4_units: bool = False
    """native FP4 tensor units (NVIDIA Blackwell, AMD CDNA 4): without them a 4-bit weight
    format is dequantised in registers and multiplied at the bf16 rate (see ``flops_for``)"""
    process_nm: NonNeg = 0.0
    """logic process node of the compute die, nm-class (TSMC N7 = 7, 4N/4NP = 4); 0 = not
    stated.  Documentation only: no formula reads it"""

    def __post_init__(self) -> None:
        if self.idle_w >= self.tdp_w:
            raise ValueError(f"idle_w ({self.idle_w}) must be below tdp_w ({self.tdp_w})")

    def flops_for(self, dtype: str) -> float:
        """Dense tensor FLOP/s for matmuls whose weights are ``dtype`` (fp8 falls back to bf16
        where the GPU has no fp8 units).  4-bit formats run on the 8-bit path only on GPUs
        with FP4 units (``fp4_units``: FP4 or FP8 activations); elsewhere they are weight-only,
        dequantised in registers against bf16 activations, at the bf16 rate (vLLM on Hopper
        serves MXFP4 MoE with triton_kernels' matmul_ogs or Marlin, INT4 with Marlin: bf16 MMA)."""
        if dtype in ("mxfp4", "int4") and not self.fp4_units:
            return self.bf16_flops
        if dtype in ("fp8", "int8", "mxfp4", "int4") and self.fp8_flops > 0:
            return self.fp8_flops
        return self.bf16_flops


class Model(Frozen, frozen=True, kw_only=True):
    """A transformer's architecture, enough for memory, bytes and FLOPs per token."""

    id: str
    aliases: tuple[str, ...] = ()
    layers: PosInt
    hidden: PosInt
    heads: PosInt
    kv_heads: PosInt
    head_dim: PosInt
    intermediate: PosInt
    """dense FFN width (dense layers)"""
    vocab: PosInt
    tied_embeddings: bool = False
    experts: NonNegInt = 0
    """routed experts per MoE layer (0 = dense)"""
    top_k: NonNegInt = 0
    shared_experts: NonNegInt = 0
    expert_intermediate: NonNegInt = 0
    first_dense_layers: NonNegInt = 0
    attention: Literal["gqa", "mla"] = "gqa"
    q_lora_rank: NonNegInt = 0
    kv_lora_rank: NonNegInt = 0
    qk_rope_head_dim: NonNegInt = 0
    weight_dtype: Dtype = "bf16"
    kv_dtype: Dtype = "bf16"
    published_params_b: Pos | None = None
    """vendor's total, billions"""
    sliding_window_tokens: NonNegInt = 0
    """attention window of the sliding-window layers, tokens (0: every layer attends to the
    whole context); config.json ``sliding_window``"""
    sliding_window_layers: NonNegInt = 0
    """how many of the layers attend only to the last ``sliding_window_tokens`` tokens
    (config.json ``layer_types``)"""
    max_context_tokens: NonNegInt = 0
    """longest sequence (prompt + output) the release supports, tokens: config.json
    ``max_position_embeddings`` (vLLM's default ``max_model_len``) or the model card's stated
    context.  0 = not stated (a user entry); every packaged model states it"""

    def __post_init__(self) -> None:
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.experts and not (0 < self.top_k <= self.experts and self.expert_intermediate > 0):
            raise ValueError("an MoE model needs 0 < top_k <= experts and expert_intermediate > 0")
        if self.attention == "mla" and not self.kv_lora_rank:
            raise ValueError("attention 'mla' needs kv_lora_rank")
        if self.first_dense_layers > self.layers:
            raise ValueError("first_dense_layers exceeds layers")
        if self.sliding_window_layers > self.layers:
            raise ValueError("sliding_window_layers exceeds layers")
        if self.sliding_window_layers and not self.sliding_window_tokens:
            raise ValueError("sliding_window_layers needs sliding_window_tokens")

    @property
    def is_moe(self) -> bool:
        """Whether the model routes tokens to experts (mixture of experts)."""
        return self.experts > 0

    @property
    def moe_layers(self) -> int:
        """Layers with routed experts: layers - first_dense_layers (0 for a dense model)."""
        return self.layers - self.first_dense_layers if self.is_moe else 0

    @property
    def dense_dtype(self) -> str:
        """dtype of the non-expert weights: MXFP4 releases keep attention/embeddings in bf16."""
        return "bf16" if self.weight_dtype in ("mxfp4", "int4") else self.weight_dtype

    # --- parameter counts (from the architecture; tests compare with published totals) ---
    @property
    def attn_params_per_layer(self) -> int:
        """Attention parameters of one layer: Q, K, V and O projections, h x heads x d +
        2 h x kv_heads x d + heads x d x h (GQA); MLA's low-rank Q and KV projections."""
        h, d = self.hidden, self.head_dim
        if self.attention == "mla":
            rope = self.qk_rope_head_dim
            q = (h * self.q_lora_rank + self.q_lora_rank * self.heads * (d + rope)
                 if self.q_lora_rank else h * self.heads * (d + rope))
            kv = h * (self.kv_lora_rank + rope) + self.kv_lora_rank * self.heads * (d + d)
            return q + kv + self.heads * d * h
        return h * self.heads * d + 2 * h * self.kv_heads * d + self.heads * d * h

    @property
    def expert_params(self) -> int:
        """Parameters of one routed expert (gate, up, down projections)."""
        return 3 * self.hidden * self.expert_intermediate

    @property
    def dense_ffn_params(self) -> int:
        """Parameters of one dense (SwiGLU) FFN: 3 x hidden x intermediate."""
        return 3 * self.hidden * self.intermediate

    @property
    def embedding_params(self) -> int:
        """Input embedding and output head: vocab x hidden, once when tied."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def non_expert_params(self) -> int:
        """Everything but routed experts: attention, dense FFNs, shared experts, routers, embeddings."""
        dense_layers = self.layers - self.moe_layers
        moe_fixed = self.moe_layers * (self.hidden * self.experts + self.shared_experts * self.expert_params)
        return (self.layers * self.attn_params_per_layer + dense_layers * self.dense_ffn_params
                + moe_fixed + self.embedding_params)

    @property
    def total_params(self) -> int:
        """Every parameter: non-expert + moe_layers x experts x expert_params."""
        return self.non_expert_params + self.moe_layers * self.experts * self.expert_params

    @property
    def active_params(self) -> int:
        """Parameters a single token multiplies (input embedding lookup excluded)."""
        emb_lookup = self.vocab * self.hidden if not self.tied_embeddings else 0
        return self.non_expert_params - emb_lookup + self.moe_layers * self.top_k * self.expert_params

    @property
    def kv_elements_per_token(self) -> int:
        """Cached elements per token over all layers (K and V, or the MLA latent)."""
        if self.attention == "mla":
            return self.layers * (self.kv_lora_rank + self.qk_rope_head_dim)
        return 2 * self.layers * self.kv_heads * self.head_dim


class _CatalogFile(Record, kw_only=True):
    schema_version: int = 1
    gpus: list[dict] = []
    models: list[dict] = []


def _norm(s: str) -> str:
    return s.strip().lower().replace("_", "-")


class Catalog:
    """GPUs and models by case-insensitive id or alias."""

    def __init__(self, gpus: list[Gpu], models: list[Model]):
        self.gpus = {g.id: g for g in gpus}
        self.models = {m.id: m for m in models}
        self._gpu_alias = {_norm(a): g.id for g in gpus for a in (g.id, *g.aliases)}
        self._model_alias = {_norm(a): m.id for m in models for a in (m.id, *m.aliases)}
        self.files: tuple[str, ...] = ()
        """The catalog files read besides the packaged ones (``--catalog``, ``$FLEETOPT_CATALOG``)."""

    def gpu(self, ident: str) -> Gpu:
        """The GPU of id or alias ``ident`` (case and punctuation ignored); unknown: one line."""
        key = self._gpu_alias.get(_norm(str(ident)))
        if key is None:
            raise FleetoptError(f"unknown GPU '{ident}'; known: {', '.join(sorted(self.gpus))}")
        return self.gpus[key]

    def model(self, ident: str) -> Model:
        """The model of id or alias ``ident`` (case and punctuation ignored); unknown: one line."""
        key = self._model_alias.get(_norm(str(ident)))
        if key is None:
            raise FleetoptError(f"unknown model '{ident}'; known: {', '.join(sorted(self.models))}")
        return self.models[key]


def _read_yaml(path: Path) -> dict[str, Any]:
    """A catalog file's mapping."""
    return read_yaml_mapping(path, "catalog file")


def _validate(kind: str, cls: type[R], entry: Any, i: int, src: str) -> R:
    """Entry ``i`` of a catalog file's ``kind`` list validated into ``cls``."""
    ident = entry.get("id", "?") if isinstance(entry, dict) else "?"
    return convert(entry, cls, f"{src}: {kind}.{i} ({ident})")


def _merge(base: dict[str, dict[str, Any]], entries: list[Any], kind: str, src: str) -> None:
    """Entries over ``base`` by normalised id (a user catalog overrides the packaged one)."""
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "id" not in e:
            raise FleetoptError(f"{src}: {kind}.{i}: each entry needs an 'id'")
        key = _norm(str(e["id"]))
        # match an override by id or alias of an existing entry
        target = next((k for k, v in base.items()
                       if key == k or key in {_norm(a) for a in v.get("aliases", ())}), None)
        if target is None:
            base[key] = {**e, "id": key}
        else:
            base[target] = {**base[target], **{k: v for k, v in e.items() if k != "id"}}


@lru_cache(maxsize=8)
def load_catalog(extra_files: tuple[str, ...] = ()) -> Catalog:
    """The packaged catalog plus ``extra_files`` and ``$FLEETOPT_CATALOG`` (later wins)."""
    pkg = resources.files("fleetopt.catalog")
    gpus: dict[str, dict] = {}
    models: dict[str, dict] = {}
    sources: list[tuple[str, dict]] = [
        ("gpus.yaml", parse_yaml(pkg.joinpath("gpus.yaml").read_text())),
        ("models.yaml", parse_yaml(pkg.joinpath("models.yaml").read_text())),
    ]
    env = os.environ.get("FLEETOPT_CATALOG", "")
    files = [*(p for p in env.split(os.pathsep) if p), *extra_files]
    for f in files:
        sources.append((f, _read_yaml(Path(f))))
    for src, data in sources:
        parsed = convert(data, _CatalogFile, src)
        _merge(gpus, parsed.gpus, "gpus", src)
        _merge(models, parsed.models, "models", src)
    g = [_validate("gpus", Gpu, e, i, "catalog") for i, e in enumerate(gpus.values())]
    m = [_validate("models", Model, e, i, "catalog") for i, e in enumerate(models.values())]
    cat = Catalog(g, m)
    cat.files = tuple(str(f) for f in files)
    return cat


def gpu_table(cat: Catalog) -> list[dict]:
    """Rows for ``fleetopt catalog gpus``."""
    return [{"id": g.id, "hbm_gib": round(g.hbm_bytes / 2**30, 1), "mem_bw_tb_s": g.mem_bw_bytes_s / 1e12,
             "bf16_tflops": g.bf16_flops / 1e12, "fp8_tflops": g.fp8_flops / 1e12, "tdp_w": g.tdp_w,
             "idle_w": g.idle_w, "link_gb_s": g.link_gb_s, "usd_per_gpu_hour": g.usd_per_gpu_hour,
             "vendor": g.vendor, "memory_type": g.memory_type, "mem_pj_per_bit": g.mem_pj_per_bit,
             "link_pj_per_bit": g.link_pj_per_bit, "process_nm": g.process_nm,
             "aliases": ",".join(g.aliases)} for g in cat.gpus.values()]


def model_table(cat: Catalog) -> list[dict]:
    """Rows for ``fleetopt catalog models``."""
    return [{"id": m.id, "params_b": round(m.total_params / 1e9, 2), "active_b": round(m.active_params / 1e9, 2),
             "layers": m.layers, "hidden": m.hidden, "heads": m.heads, "kv_heads": m.kv_heads,
             "head_dim": m.head_dim, "experts": m.experts, "top_k": m.top_k, "attention": m.attention,
             "weight_dtype": m.weight_dtype, "kv_dtype": m.kv_dtype,
             "kv_bytes_per_token": m.kv_elements_per_token * DTYPE_BYTES[m.kv_dtype],
             "max_context_tokens": m.max_context_tokens}
            for m in cat.models.values()]

