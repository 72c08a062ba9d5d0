"""HTML pieces of the report: one page, inline styles, tables that keep the full numbers.

Nothing here refers to another host: figures are ``data:`` URIs, styles are inline, no script is
loaded. Every numeric cell shows a rounded value and keeps the table's full value in
``data-value`` (analysis outputs are never rounded), with its column in ``data-col`` and its
table in the ``<table data-table=...>``, so tests and scripts can read the numbers back.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

__all__ = ["Section", "escape", "figure", "notes", "page", "table"]

STYLE = """
:root { --fg: #1d2329; --muted: #5c6670; --line: #d8dde2; --accent: #0072B2; --bad: #b3261e; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--fg); margin: 0; background: #fff; }
header { padding: 24px 40px 12px; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 2px 0; color: var(--muted); }
nav { padding: 8px 40px; border-bottom: 1px solid var(--line); position: sticky; top: 0;
      background: #fafbfc; z-index: 1; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; white-space: nowrap; }
main { padding: 8px 40px 40px; max-width: 1180px; }
section { margin-top: 28px; }
h2 { font-size: 19px; border-bottom: 2px solid var(--accent); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13px; max-width: 100%; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; }
td[data-col$="hashes"], td[data-col$="fingerprints"], td[data-col$="commits"],
td[data-col="error"] { overflow-wrap: anywhere; min-width: 10em; }
th { background: #f2f4f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.sig { font-weight: 700; }
caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: 12px;
          padding-top: 4px; }
figure { margin: 12px 0; }
figure img { height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12px; }
.notes li { color: #7a4b00; }
.bad { color: var(--bad); font-weight: 600; }
.good { color: #1b7f3b; font-weight: 600; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; font-size: 12px; }
details summary { cursor: pointer; color: var(--accent); }
.refs li { margin-bottom: 4px; }
"""


def escape(text: Any) -> str:
    """HTML-escaped ``str(text)``."""
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class Section:
    """One section of the report: anchor id, title and body HTML."""

    anchor: str
    title: str
    body: str


def _cell(value: Any, col: str, digits: int) -> str:
    if isinstance(value, bool) or value is None:
        text = "–" if value is None else str(value).lower()
        return f'<td data-col="{escape(col)}">{text}</td>'
    if isinstance(value, float):
        if not math.isfinite(value):
            return f'<td class="num" data-col="{escape(col)}" data-value="nan">–</td>'
        if value != 0 and abs(value) < 10 ** (-digits):
            shown = f"{value:.1e}"
        else:
            shown = f"{value:.{digits}f}"
        return f'<td class="num" data-col="{escape(col)}" data-value="{value!r}">{shown}</td>'
    if isinstance(value, int):
        return f'<td class="num" data-col="{escape(col)}" data-value="{value}">{value}</td>'
    return f'<td data-col="{escape(col)}">{escape(value)}</td>'


def table(
    frame: pl.DataFrame,
    columns: Sequence[tuple[str, str]],
    *,
    name: str,
    caption: str = "",
    digits: int = 3,
) -> str:
    """An HTML table of ``columns`` (frame column, header) present in ``frame``.

    ``name`` goes in ``data-table``; ``method`` and ``unit`` values, when the frame has them and
    they are not shown as columns, are added to the caption, so a number never travels without
    the method that produced it.
    """
    present = [(c, h) for c, h in columns if c in frame.columns]
    shown = {c for c, _ in present}
    extra = [
        f"{c}: {', '.join(str(v) for v in frame[c].unique(maintain_order=True).to_list())}"
        for c in ("method", "unit")
        if c in frame.columns and c not in shown
    ]
    cap = "; ".join([caption, *extra] if caption else extra)
    head = "".join(f"<th>{escape(h)}</th>" for _, h in present)
    body = "".join(
        "<tr>" + "".join(_cell(row[c], c, digits) for c, _ in present) + "</tr>"
        for row in frame.iter_rows(named=True)
    )
    caption_html = f"<caption>{escape(cap)}</caption>" if cap else ""
    return (
        f'<table data-table="{escape(name)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody>{caption_html}</table>"
    )


def figure(svg: bytes, caption: str, name: str, width_px: int = 700) -> str:
    """A figure: the SVG inlined as a ``data:`` image (vector, isolated from the page)."""
    data = base64.b64encode(svg).decode("ascii")
    return (
        f'<figure data-figure="{escape(name)}"><img alt="{escape(caption)}" '
        f'style="width: min(100%, {width_px}px)" '
        f'src="data:image/svg+xml;base64,{data}"><figcaption>{escape(caption)}</figcaption>'
        "</figure>"
    )


def notes(items: Sequence[str], title: str = "") -> str:
    """A bulleted list of notes (what is missing, what could not be computed)."""
    if not items:
        return ""
    head = f"<p>{escape(title)}</p>" if title else ""
    return head + '<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in items) + "</ul>"


def page(title: str, subtitle: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole report: header, navigation to each section, the sections."""
    nav = "".join(f'<a href="#{escape(s.anchor)}">{escape(s.title)}</a>' for s in sections)
    sub = "".join(f"<p>{escape(line)}</p>" for line in subtitle)
    body = "".join(
        f'<section id="{escape(s.anchor)}"><h2>{escape(s.title)}</h2>{s.body}</section>'
        for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1>{sub}</header><nav>{nav}</nav>"
        f"<main>{body}</main></body></html>\n"
    )
