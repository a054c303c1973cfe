"""Catalog: architecture-derived parameter counts against published totals; ids, aliases,
overrides and one-line errors."""

import pytest

from fleetopt import FleetoptError
from fleetopt.catalog import load_catalog


def test_required_entries_present(cat):
    for g in ["a100-sxm-80gb", "h100-sxm", "h200", "b200", "gb200", "l40s", "mi300x"]:
        assert cat.gpu(g).id == g
    for m in ["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "qwen3-8b", "qwen3-32b", "qwen3-235b-a22b",
              "qwen3-30b-a3b", "mixtral-8x7b", "deepseek-v3", "gpt-oss-120b"]:
        assert cat.model(m).id == m


def test_aliases_case_insensitive(cat):
    assert cat.gpu("H100").id == cat.gpu("h100-SXM").id == "h100-sxm"
    assert cat.gpu("B200").id == "b200"
    assert cat.model("Qwen/Qwen3-235B-A22B-Instruct-2507").id == "qwen3-235b-a22b"


@pytest.mark.parametrize("mid", ["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "qwen3-8b", "qwen3-14b",
                                 "qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b", "mixtral-8x7b",
                                 "deepseek-v3", "gpt-oss-120b"])
def test_param_count_matches_published(cat, mid):
    """Parameters computed from the architecture agree with the vendor's total within 1 %."""
    m = cat.model(mid)
    assert abs(m.total_params / 1e9 / m.published_params_b - 1) < 0.01


@pytest.mark.parametrize("mid,active_b", [("qwen3-235b-a22b", 22.0), ("qwen3-30b-a3b", 3.3),
                                          ("mixtral-8x7b", 12.9), ("deepseek-v3", 37.0), ("gpt-oss-120b", 5.1)])
def test_moe_active_params(cat, mid, active_b):
    """Activated parameters (model cards) within 10 % (cards count embeddings differently)."""
    assert abs(cat.model(mid).active_params / 1e9 / active_b - 1) < 0.10


def test_unknown_id_one_line(cat):
    with pytest.raises(FleetoptError, match="unknown GPU 'h900'"):
        cat.gpu("h900")


def test_user_catalog_overrides_and_adds(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("gpus:\n  - id: H100\n    usd_per_gpu_hour: 2.5\n  - id: my-gpu\n    hbm_bytes: 1.0e11\n"
                 "    mem_bw_bytes_s: 4.0e12\n    bf16_flops: 1.0e15\n    fp8_flops: 2.0e15\n    tdp_w: 800\n"
                 "    idle_w: 90\n    link_gb_s: 450\n    usd_per_gpu_hour: 3\n")
    c = load_catalog((str(f),))
    assert c.gpu("h100").usd_per_gpu_hour == 2.5
    assert c.gpu("h100").tdp_w == 700
    assert c.gpu("MY-GPU").tdp_w == 800


def test_bad_user_catalog_names_field(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("gpus:\n  - id: h100\n    tdp_w: -5\n")
    with pytest.raises(FleetoptError, match=r"tdp_w"):
        load_catalog((str(f),))
