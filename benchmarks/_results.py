"""The shared tail of every benchmark: write a table to benchmarks/results/NAME.md and print it."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def publish(name: str, text: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text("```\n" + text + "\n```\n")
    print(text)
