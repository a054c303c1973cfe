"""One colour per GPU id, the same in every plot, every run and every process.

The packaged GPUs have colours chosen by hand (GPU families in related hues: Hopper
blues, Blackwell greens, AMD Instinct reds and purples); any other id (a user's catalog)
gets one from a second palette picked by the CRC-32 of its lower-cased id, never by
Python's per-process string ``hash``.
"""

from __future__ import annotations

import re
import zlib

GPU_COLOURS: dict[str, str] = {
    "a100-sxm-80gb": "#8c564b",
    "a100-sxm-40gb": "#c49c94",
    "h100-sxm": "#1f77b4",
    "h200": "#17becf",
    "h200-nvl": "#6baed6",
    "gh200": "#393b79",
    "b200": "#2ca02c",
    "b300": "#98df8a",
    "gb200": "#bcbd22",
    "l40s": "#7f7f7f",
    "mi300x": "#d62728",
    "mi325x": "#ff9896",
    "mi355x": "#9467bd",
}
"""The packaged catalog's GPUs."""

OTHER_COLOURS: tuple[str, ...] = ("#e377c2", "#ff7f0e", "#8c6d31", "#637939", "#843c39", "#7b4173", "#3182bd",
                                  "#e6550d", "#31a354", "#756bb1", "#636363", "#bd9e39", "#ad494a", "#a55194",
                                  "#5254a3", "#8ca252")
"""GPUs outside the packaged catalog, by CRC-32 of the id."""


def split_gpu_tp(label: str) -> tuple[str, int | None]:
    """A topology's ``GPUxTP`` (``b200x2``, ``h100-sxmx8``, ``mi300xx8``) as (GPU id
    lower-cased, TP); a label without ``xTP`` as (id, None)."""
    g = label.strip().lower()
    m = re.fullmatch(r"(.+)x(\d+)", g)
    return (m.group(1), int(m.group(2))) if m else (g, None)


def gpu_colour(gpu: str) -> str:
    """The colour (``#rrggbb``) of a GPU id (case does not matter)."""
    g = gpu.strip().lower()
    if g in GPU_COLOURS:
        return GPU_COLOURS[g]
    return OTHER_COLOURS[zlib.crc32(g.encode()) % len(OTHER_COLOURS)]
