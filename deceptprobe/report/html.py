"""A self-contained HTML report: plotly's JavaScript inlined once, every figure embedded.

The file opens offline (no CDN), so a report can be mailed, archived or attached to a paper.
Each figure sits in a ``<div class="figure" data-figure="...">`` so a browser test can check
that every one of them rendered.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.holds-true { color: #0a7d28; font-weight: bold; } .holds-false { color: #b00020; font-weight: bold; }
.holds-null { color: #777; } .figure { margin: 1em 0; } .note { color: #555; font-size: 0.9em; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 1em; }
.grid > .figure { min-width: 0; }
"""
# Plotly sizes a figure from its container when it is drawn, which may be before the grid has
# laid out; a resize event once the page has loaded makes every figure fit its cell.
RESIZE = "<script>window.addEventListener('load',()=>window.dispatchEvent(new Event('resize')));</script>"


@dataclass
class Section:
    """A titled part of the report: HTML text, then figures."""

    title: str
    html: str = ""
    figures: list[tuple[str, go.Figure]] = field(default_factory=list)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw``."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for r in rows:
        cells = "".join(f"<td>{c if raw else html.escape(fmt(c))}</td>" for c in r)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)) and all(isinstance(x, (float, int)) or x is None for x in v):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v)


def render(title: str, intro: str, sections: Sequence[Section]) -> str:
    """The whole report as one HTML string."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='note'>{intro}</p>",
    ]
    n = 0
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>{sec.html}")
        if sec.figures:
            parts.append("<div class='grid'>")
        for name, fig in sec.figures:
            n += 1
            div = fig.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"fig{n}",
                config={"displaylogo": False, "responsive": True},
            )
            parts.append(f"<div class='figure' data-figure='{html.escape(name)}'>{div}</div>")
        if sec.figures:
            parts.append("</div>")
    parts.append(RESIZE + "</body></html>")
    return "".join(parts)


def write_report(path: str | Path, title: str, intro: str, sections: Sequence[Section]) -> Path:
    """Render and write atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render(title, intro, sections)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
