"""HTML building blocks of the analyst report: escaping, formatting, tables, images, the page.

Everything the report shows passes through :func:`esc` or a :class:`Column` formatter, because
customer identifiers, plan names and reason texts come from the user's data and are untrusted.
Only strings wrapped in :class:`Markup` (built here from escaped parts) are inserted verbatim.

The page is one self-contained file: CSS and a small sortable-table script are inline, images
are ``data:`` URIs, and a Content-Security-Policy forbids loading anything else, so a report
that tried to fetch a resource would fail visibly in a browser instead of leaking a request.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

MISSING = "—"


class Markup(str):
    """A string of HTML that is already safe to insert (built from escaped parts)."""


def esc(value: Any) -> Markup:
    """Escape any value for HTML text or attribute context; missing values become a dash."""
    if _is_missing(value):
        return Markup(MISSING)
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def to_float(value: Any) -> float | None:
    """Return ``value`` as a finite float, or ``None`` when it is missing or not a number."""
    if isinstance(value, bool) or _is_missing(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fmt_number(value: Any, digits: int = 3) -> str:
    """Format a metric-like number with ``digits`` decimals (text passes through)."""
    number = to_float(value)
    if number is None:
        return MISSING if _is_missing(value) else str(value)
    if number.is_integer() and abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:,.{digits}f}"


def fmt_int(value: Any) -> str:
    """Format a count with thousands separators."""
    number = to_float(value)
    return MISSING if number is None else f"{number:,.0f}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    """Format a fraction (0.123) as a percentage (12.3%)."""
    number = to_float(value)
    return MISSING if number is None else f"{100 * number:.{digits}f}%"


def fmt_money(value: Any) -> str:
    """Format an amount of revenue; the currency is whatever the input data uses."""
    number = to_float(value)
    if number is None:
        return MISSING
    return f"{number:,.0f}" if abs(number) >= 100 else f"{number:,.2f}"


def fmt_pp(value: Any) -> str:
    """Format a change in probability as signed percentage points."""
    number = to_float(value)
    return MISSING if number is None else f"{100 * number:+.1f} pp"


def fmt_date(value: Any) -> str:
    """Format a timestamp as an ISO date."""
    if _is_missing(value):
        return MISSING
    try:
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    except (TypeError, ValueError):
        return str(value)


Kind = Literal["text", "int", "num", "pct", "money", "pp", "date", "html"]
_FORMATTERS = {
    "int": fmt_int,
    "num": fmt_number,
    "pct": fmt_pct,
    "money": fmt_money,
    "pp": fmt_pp,
    "date": fmt_date,
}


@dataclass(frozen=True)
class Column:
    """One table column: a header and how to format and sort its raw values.

    Attributes:
        title: Header text.
        kind: ``text`` (escaped), a numeric format (right-aligned, sorted by value),
            ``date``, or ``html`` (the value must be :class:`Markup`).
        digits: Decimals for ``num``.
        tip: Optional header tooltip explaining the column.
        wrap: Let long unbroken values (identifiers) wrap anywhere instead of widening the
            table.
    """

    title: str
    kind: Kind = "text"
    digits: int = 3
    tip: str | None = None
    wrap: bool = False

    def cell(self, value: Any) -> str:
        """Return the ``<td>`` for one raw value."""
        if self.kind == "html":
            body = value if isinstance(value, Markup) else esc(value)
            return f"<td>{body}</td>"
        if self.kind == "text":
            return f'<td class="w">{esc(value)}</td>' if self.wrap else f"<td>{esc(value)}</td>"
        if self.kind == "num":
            text = fmt_number(value, self.digits)
        else:
            text = _FORMATTERS[self.kind](value)
        # ISO dates sort correctly as text; numbers sort by their raw value, not the display.
        sort = None if self.kind == "date" else to_float(value)
        attr = f' data-sort="{sort!r}"' if sort is not None else ""
        return f'<td class="n"{attr}>{esc(text)}</td>'


def table(
    columns: Sequence[Column],
    rows: Iterable[Sequence[Any]],
    *,
    sortable: bool = True,
    caption: str | None = None,
) -> Markup:
    """Render a compact, horizontally scrollable table.

    Args:
        columns: Column specs, one per value in each row.
        rows: Raw values; they are formatted and escaped by the column specs.
        sortable: Let the reader sort by clicking a header.
        caption: Optional caption shown under the table.

    Returns:
        The table HTML.
    """
    head = "".join(
        "<th"
        + ("" if c.kind in ("text", "html") else ' class="n"')
        + (f' title="{esc(c.tip)}"' if c.tip else "")
        + f">{esc(c.title)}</th>"
        for c in columns
    )
    body = "".join(
        "<tr>" + "".join(c.cell(v) for c, v in zip(columns, row, strict=True)) + "</tr>"
        for row in rows
    )
    cls = ' class="sortable"' if sortable else ""
    cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
    return Markup(
        f'<div class="tw"><table{cls}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>{cap}"
    )


def kv_table(pairs: Iterable[tuple[str, Any]]) -> Markup:
    """Render label/value pairs as a two-column table (values escaped, numbers formatted)."""
    rows = []
    for key, value in pairs:
        # Numbers get a metric format; strings were formatted by the caller and stay as they are.
        is_number = not isinstance(value, str) and to_float(value) is not None
        text = fmt_number(value) if is_number else value
        rows.append(f"<tr><th>{esc(key)}</th><td>{esc(text)}</td></tr>")
    return Markup(f'<div class="tw"><table class="kv"><tbody>{"".join(rows)}</tbody></table></div>')


def ordered_list(items: Iterable[Any]) -> Markup:
    """An escaped ``<ol>`` of the non-blank items (reasons, moving features), or a dash."""
    lis = "".join(f"<li>{esc(i)}</li>" for i in items if str(i).strip())
    return Markup(f'<ol class="reasons">{lis}</ol>') if lis else esc(None)


def image(png: bytes, alt: str, caption: str | None = None) -> Markup:
    """Embed PNG bytes as a ``data:`` URI figure (no file or network reference)."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Markup(
        f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">{cap}</figure>'
    )


def not_available(what: str, why: str) -> Markup:
    """A clearly marked placeholder for content whose input is missing or unusable."""
    return Markup(
        f'<div class="na" role="note"><strong>Not available: {esc(what)}</strong>'
        f"<span>{esc(why)}</span></div>"
    )


def section(anchor: str, title: str, body: str, lead: str | None = None) -> Markup:
    """Wrap report content in a titled section with an anchor for the table of contents."""
    intro = f'<p class="lead">{esc(lead)}</p>' if lead else ""
    return Markup(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{intro}{body}</section>')


def kpis(items: Iterable[tuple[str, Any, str | None]]) -> Markup:
    """Headline numbers as cards: ``(label, formatted value, optional note)``."""
    cards = "".join(
        f'<div class="kpi"><div class="kl">{esc(label)}</div><div class="kval">{esc(value)}</div>'
        + (f'<div class="kn">{esc(note)}</div>' if note else "")
        + "</div>"
        for label, value, note in items
    )
    return Markup(f'<div class="kpis">{cards}</div>')


_CSS = """
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#e3e8ef;--bg:#f6f8fb;--card:#fff;--accent:#1f5f8b;
--accent2:#e07a1f;--good:#2e7d4f;--bad:#b3261e;--na:#fff6e5;--nab:#f0b35a}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#12344d;color:#fff;padding:28px 0 22px}
header h1{margin:0 0 4px;font-size:26px;font-weight:650;letter-spacing:-.01em}
header p{margin:0;color:#c9d6e3}
.wrap{max-width:1120px;margin:0 auto;padding:0 24px}
nav{background:#fff;border-bottom:1px solid var(--line);position:sticky;top:0;z-index:1}
nav .wrap{display:flex;flex-wrap:wrap;gap:4px 18px;padding-top:10px;padding-bottom:10px}
nav a{color:var(--accent);text-decoration:none;font-size:14px;font-weight:550}
nav a:hover{text-decoration:underline}
main{padding:8px 0 40px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:20px 24px;margin:20px 0}
h2{margin:0 0 6px;font-size:21px;color:#12344d}
h3{margin:22px 0 8px;font-size:16px;color:#12344d}
.lead{color:var(--muted);margin:0 0 14px;max-width:80ch}
.caption,figcaption{color:var(--muted);font-size:13px;margin:6px 0 0}
.tw{overflow-x:auto;margin:6px 0}
table{border-collapse:collapse;font-size:13.5px;width:100%}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:#eef3f8;color:#243b53;font-weight:600;vertical-align:bottom}
td.w{overflow-wrap:anywhere;min-width:9ch}
tbody tr:nth-child(even){background:#fafbfd}
tbody tr:hover{background:#eef6ff}
.n{text-align:right;font-variant-numeric:tabular-nums}
td.n{white-space:nowrap}
table.sortable thead th{cursor:pointer;user-select:none}
table.sortable thead th::after{content:" \\2195";color:#9aa5b1;font-size:11px}
table.sortable thead th[aria-sort=ascending]::after{content:" \\2191";color:var(--accent)}
table.sortable thead th[aria-sort=descending]::after{content:" \\2193";color:var(--accent)}
table.kv{width:auto;min-width:50%}
table.kv th{background:none;font-weight:550;color:var(--muted);white-space:nowrap}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(148px,1fr));gap:10px;
margin:20px 0}
.kpi{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--accent);
border-radius:8px;padding:10px 14px}
.kl{color:var(--muted);font-size:12.5px;text-transform:uppercase;letter-spacing:.04em}
.kval{font-size:20px;font-weight:650;white-space:nowrap}
.kn{color:var(--muted);font-size:12.5px}
figure{margin:8px 0;text-align:center}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px;
background:#fff}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px;align-items:start}
.na{background:var(--na);border:1px solid var(--nab);border-radius:8px;padding:10px 14px;
margin:8px 0}
.na strong{display:block;color:#8a4b00}
.note{background:#eef3f8;border-left:4px solid var(--accent2);border-radius:6px;padding:10px 14px;
margin:8px 0 14px}
.na span{color:var(--ink);font-size:14px}
ul.notes{margin:4px 0;padding-left:20px;color:var(--muted);font-size:13.5px}
ol.reasons{margin:0;padding-left:18px;min-width:300px;font-size:13px;line-height:1.4}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;font-size:13px}
.badge.good{background:#e3f4ea;color:var(--good)}.badge.bad{background:#fde8e6;color:var(--bad)}
.badge.neutral{background:#eef3f8;color:#243b53}
.better{color:var(--good);font-weight:600}.worse{color:var(--bad);font-weight:600}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:14px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 16px;background:#fbfcfe}
.card h3{margin:0 0 2px}.card h4{margin:12px 0 4px;font-size:14px;color:#243b53}
.card .kpis{margin:10px 0;grid-template-columns:repeat(auto-fit,minmax(96px,1fr))}
.card .kval{font-size:17px}
details{margin:6px 0}summary{cursor:pointer;color:var(--accent);font-weight:550;font-size:14px}
footer{color:var(--muted);font-size:13px;padding:0 0 30px}
@media (max-width:700px){.wrap{padding:0 12px}section{padding:14px}.grid{grid-template-columns:1fr}}
"""

# Sorts a table by the clicked header: numbers by their data-sort value, text otherwise,
# missing values last. Plain ES5, no globals besides what the browser provides.
_JS = """
(function(){
function key(td){var s=td.getAttribute('data-sort');
if(s!==null&&s!==''){var f=parseFloat(s);return isNaN(f)?s:f;}
var t=td.textContent.trim();return t==='\\u2014'?null:t.toLowerCase();}
function cmp(a,b){if(a===b)return 0;if(a===null)return 1;if(b===null)return -1;
if(typeof a==='number'&&typeof b==='number')return a-b;return String(a)<String(b)?-1:1;}
var heads=document.querySelectorAll('table.sortable thead th');
Array.prototype.forEach.call(heads,function(th){th.addEventListener('click',function(){
var tbl=th.closest('table'),body=tbl.tBodies[0],i=th.cellIndex;
var asc=th.getAttribute('aria-sort')!=='ascending';
Array.prototype.forEach.call(tbl.querySelectorAll('thead th'),function(h){
h.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',asc?'ascending':'descending');
var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(r1,r2){var a=key(r1.cells[i]),b=key(r2.cells[i]);
if(a===null||b===null)return cmp(a,b);return asc?cmp(a,b):cmp(b,a);});
rows.forEach(function(r){body.appendChild(r);});});});
})();
"""


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    """Assemble the complete, self-contained HTML document.

    Args:
        title: Page and header title.
        subtitle: Line under the title (run facts).
        nav: ``(anchor, label)`` pairs for the table of contents.
        body: The sections' HTML.

    Returns:
        The HTML document.
    """
    links = "".join(f'<a href="#{esc(a)}">{esc(label)}</a>' for a, label in nav)
    # A hash (not 'unsafe-inline') whitelists exactly our script: if escaping ever failed,
    # an injected <script> would still be refused by the browser.
    digest = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f'<header><div class="wrap"><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></div></header>'
        f'<nav aria-label="Sections"><div class="wrap">{links}</div></nav>'
        f'<main class="wrap">{body}</main>'
        '<footer class="wrap">Generated by churn. Probabilities are calibrated: among '
        "customers given 20%, about one in five churns within the label horizon.</footer>"
        f"<script>{_JS}</script></body></html>\n"
    )
