"""Tables -> Markdown, LaTeX (booktabs), CSV (long format) and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Sequence

import pandas as pd
from markdown_it import MarkdownIt

from harness.leaderboard.tables import Table


def markdown(table: Table) -> str:
    """A GitHub table, bold as **…**, footnotes below."""
    lines = [f"### {table.title}", "", "| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    for row in table.rows:
        lines.append("| " + " | ".join(f"**{t}**" if bold else t for t, bold in row) + " |")
    lines.append("")
    lines.extend(f"{note}  " for note in table.notes)
    return "\n".join(lines).rstrip() + "\n"


def latex(table: Table) -> str:
    """A booktabs tabular inside a table float, bold as \\textbf."""
    def esc(text: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                     ("±", r"$\pm$"), ("†", r"$^\dagger$"), ("—", "--"), ("≥", r"$\geq$"), ("·", r"$\cdot$"),
                     ("−", "-"), ("–", "--")):
            text = text.replace(a, b)
        return text

    spec = "l" + "r" * (len(table.header) - 1)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(table.title)}}}", rf"\begin{{tabular}}{{{spec}}}",
             r"\toprule", " & ".join(esc(h) for h in table.header) + r" \\", r"\midrule"]
    for row in table.rows:
        lines.append(" & ".join(rf"\textbf{{{esc(t)}}}" if bold else esc(t) for t, bold in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\footnotesize " + esc(" ".join(table.notes)))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def long_csv(cells: pd.DataFrame) -> str:
    """One row per cell and metric."""
    metric_columns = [c for c in cells.columns if c.startswith("metric_")]
    ids = ["model", "task", "template", "regime", "k", "seed", "n", "config_hash"]
    tidy = cells.melt(id_vars=ids, value_vars=metric_columns, var_name="metric", value_name="value").dropna(subset=["value"])
    tidy["metric"] = tidy["metric"].str.removeprefix("metric_")
    tidy["seed"] = tidy["seed"].astype("Int64")
    return tidy.sort_values([*ids[:6], "metric"], na_position="first").to_csv(index=False)


_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.title = 'click to sort';
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.getAttribute('data-dir') !== 'asc';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    var key = function (row) {
      var text = row.cells[th.cellIndex].textContent.trim();
      var num = parseFloat(text.replace(/[^0-9.eE+-].*$/, ''));
      return isNaN(num) ? text.toLowerCase() : num;
    };
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { cursor: pointer; background: #f4f4f4; }
th[data-dir='asc']::after { content: ' ▲'; } th[data-dir='desc']::after { content: ' ▼'; }
.notes { font-size: 0.8rem; color: #555; max-width: 900px; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5rem 0; }
"""


def notes_html(markdown_text: str) -> str:
    """A notes file's Markdown as HTML (CommonMark via markdown-it-py; raw HTML in it is escaped, not passed on)."""
    return MarkdownIt("commonmark", {"html": False}).render(markdown_text)


def html_page(title: str, intro_markdown: str, tables: Sequence[Table], images: Sequence[Path], footer: str) -> str:
    """One file: tables sortable by clicking a header, plots inline as data URIs, no network needed."""
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>", notes_html(intro_markdown)]
    for table in tables:
        parts.append(f"<h2>{html.escape(table.title)}</h2><table class='sortable' id='{table.key}'><thead><tr>")
        parts.extend(f"<th>{html.escape(h)}</th>" for h in table.header)
        parts.append("</tr></thead><tbody>")
        for row in table.rows:
            cells = "".join(f"<td>{'<b>' if bold else ''}{html.escape(t)}{'</b>' if bold else ''}</td>" for t, bold in row)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</tbody></table>")
        parts.extend(f"<p class='notes'>{html.escape(n)}</p>" for n in table.notes)
    if images:
        parts.append("<h2>Plots</h2>")
    for image in images:
        data = base64.b64encode(image.read_bytes()).decode()
        parts.append(f"<figure><img alt='{html.escape(image.stem)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(image.stem)}</figcaption></figure>")
    parts.append(f"<h2>Provenance</h2><pre>{html.escape(footer)}</pre>")
    parts.append(f"<script>{_SORT_JS}</script></body></html>")
    return "\n".join(parts) + "\n"
