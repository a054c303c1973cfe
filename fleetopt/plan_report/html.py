"""The plan report as one self-contained HTML file: inline CSS, the plots embedded as
base64 PNG data URIs, no script and nothing fetched, so it reads offline and can be mailed
as a single file."""

from __future__ import annotations

import base64
import html
import re

from fleetopt.plan_report.document import Block, Figure, Heading, Para, Table

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d2733; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #1f3b73; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; color: #1f3b73; }
table { border-collapse: collapse; margin: .6em 0; font-size: .86em; }
th, td { border: 1px solid #d0d7de; padding: .25em .6em; }
th { background: #eef2f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #f8fafc; }
code { background: #eef2f7; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e1e4e8; }
figcaption { font-size: .9em; color: #57606a; }
"""


def _inline(text: str) -> str:
    """Escaped text with the Markdown the document uses: `code` and **bold**."""
    s = html.escape(text)
    s = re.sub(r"`([^`]*)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def table(t: Table) -> str:
    """An HTML table; numeric columns right-aligned."""
    num = t.numeric or [False] * len(t.header)
    head = "".join(f"<th>{_inline(h)}</th>" for h in t.header)
    body = "".join("<tr>" + "".join(f'<td class="num">{_inline(c)}</td>' if n else f"<td>{_inline(c)}</td>"
                                    for c, n in zip(row, num)) + "</tr>\n" for row in t.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def render(blocks: list[Block], images: dict[str, bytes], title: str) -> str:
    """The blocks as one HTML document; ``images``: PNG bytes by figure file name."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            out.append(table(b))
        elif isinstance(b, Figure) and b.name in images:
            data = base64.b64encode(images[b.name]).decode("ascii")
            out.append(f'<figure id="{html.escape(b.name)}"><img src="data:image/png;base64,{data}" '
                       f'alt="{html.escape(b.caption)}"><figcaption>{_inline(b.caption)}</figcaption></figure>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(out) + "\n</body>\n</html>\n")
