"""The CLI end to end: JSON fields, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from fleetopt.cli import main


def run(*args):
    p = subprocess.run([sys.executable, "-m", "fleetopt", *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_law_paper_json_reproduces_table1(capsys):
    assert main(["law", "--mode", "paper", "--model", "llama-3.1-70b", "--gpu", "H100", "--tp", "8",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["n_max"] for r in rows] == [512, 256, 128, 64, 32, 16, 8]
    assert [round(r["tok_per_w_paper"], 2) for r in rows] == [35.00, 17.62, 8.97, 4.69, 2.58, 1.50, 0.88]
    for key in ["context", "n_max", "step_ms", "decode_tokens_per_s", "power_per_gpu_w", "instance_power_w",
                "tokens_per_joule", "tok_per_w_paper"]:
        assert key in rows[0]


def test_estimate_json_keys(capsys):
    assert main(["estimate", "--model", "llama-3.1-8b", "--gpu", "h100", "--batch", "64", "--prompt-tokens", "500",
                 "--output-tokens", "300", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in ["step_ms", "ttft_ms", "decode_tokens_per_s", "power_per_gpu_w", "instance_power_w",
                "energy_per_output_token_j", "energy_per_query_wh"]:
        assert d[key] > 0
    assert d["energy_per_query_wh"] == pytest.approx(d["energy_per_output_token_j"] * 300 / 3600, rel=1e-4)


@pytest.mark.parametrize("args,needle", [
    (["law", "--model", "nope", "--gpu", "h100"], "unknown model 'nope'"),
    (["law", "--model", "llama-3.1-70b", "--gpu", "h100", "--tp", "3"], "does not divide"),
    (["law", "--model", "llama-3.1-405b", "--gpu", "h100", "--tp", "2"], "does not fit"),
    (["estimate", "--model", "llama-3.1-8b", "--gpu", "h100", "--batch", "8", "--prompt-tokens", "-4",
      "--output-tokens", "10"], "prompt-tokens must be > 0"),
    (["law", "--model", "llama-3.1-8b", "--gpu", "h100", "--contexts", "4k"], "contexts"),
    (["law", "--model", "llama-3.1-8b", "--gpu", "h100", "--format", "xml"], "format"),
])
def test_errors_one_line_exit_2(args, needle):
    code, out, err = run(*args)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_catalog_listing(capsys):
    assert main(["catalog", "gpus", "--format", "json"]) == 0
    ids = {r["id"] for r in json.loads(capsys.readouterr().out)}
    assert {"h100-sxm", "b200", "mi300x", "l40s"} <= ids
