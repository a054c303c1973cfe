"""The plan report as Markdown: real tables (GitHub-flavoured pipe tables), figures as
image links to the PNGs written beside it."""

from __future__ import annotations

from fleetopt.plan_report.document import Block, Figure, Heading, Para, Table


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|")


def table(t: Table) -> str:
    """A pipe table; numeric columns right-aligned."""
    num = t.numeric or [False] * len(t.header)
    lines = ["| " + " | ".join(_cell(h) for h in t.header) + " |",
             "|" + "|".join("---:" if n else "---" for n in num) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def render(blocks: list[Block]) -> str:
    """The blocks as one Markdown document."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append(table(b))
        elif isinstance(b, Figure):
            out.append(f"![{b.caption}]({b.name})\n\n*{b.caption}* (`{b.name}`)")
    return "\n\n".join(out) + "\n"
