"""Derive the compact joint histograms the physical-mode instances carry (<= 64 cells) from
the raw data in ../shared/data (never copied into the repo).

    python instances/derive_histograms.py      # prints YAML 'cells:' blocks per dataset

Input bins: powers of two from 1 to 16K tokens (finer than log2 above 1K, where pool
boundaries are decided: 1K, 1.5K, 2K, 3K, 4K, 6K, 8K, 12K, 16K); output bins: 1, 64, 256,
1024, 4096+.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fleetopt.workload import histogram_cells

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IN_EDGES = [1, 128, 256, 512, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384]
OUT_EDGES = [1, 64, 256, 1024, 4097]
SOURCES = {
    "azure_conv": (DATA / "traces" / "azure_llm_2023_conv.csv", "ContextTokens", "GeneratedTokens"),
    "azure_code": (DATA / "traces" / "azure_llm_2023_code.csv", "ContextTokens", "GeneratedTokens"),
    "sharegpt": (DATA / "lengths" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv", "num_prefill_tokens", "num_decode_tokens"),
    "arxiv": (DATA / "lengths" / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv", "num_prefill_tokens", "num_decode_tokens"),
}


def cells(name: str) -> list[list[float]]:
    path, ic, oc = SOURCES[name]
    df = pd.read_csv(path, usecols=[ic, oc])
    inp = np.clip(df[ic].to_numpy(float), 1, IN_EDGES[-1] - 1)
    out = np.clip(df[oc].to_numpy(float), 1, OUT_EDGES[-1] - 1)
    return histogram_cells(inp, out, IN_EDGES, OUT_EDGES)


if __name__ == "__main__":
    for name in SOURCES:
        c = cells(name)
        print(f"# {name}: {len(c)} cells")
        print("    cells:")
        for row in c:
            print(f"      - [{', '.join(f'{x:g}' for x in row)}]")
