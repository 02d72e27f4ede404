"""Self-contained HTML pages: plotly.js embedded once, figures and tables after it.

The page records JavaScript errors in ``<body data-js-errors>`` and the number of
rendered charts in ``data-charts-rendered`` so a headless browser can check it.
"""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
.board td { white-space: nowrap; } .board th { white-space: nowrap; }
.board th.text { text-align: left; } .board td.text { white-space: normal; overflow-wrap: anywhere; text-align: left; }
details { margin: .2em 0 1em; } summary { cursor: pointer; color: #555; font-size: .9em; }
.wide { overflow-x: auto; max-width: 100%; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.note { color: #666; font-size: .9em; } .warn { color: #a40; }
"""

WATCH_ERRORS = """<script>
window.__jsErrors = [];
window.addEventListener('error', function (e) { window.__jsErrors.push(String(e.message)); });
window.addEventListener('load', function () {
  setTimeout(function () {
    document.body.dataset.jsErrors = String(window.__jsErrors.length);
    document.body.dataset.jsErrorText = window.__jsErrors.join(' | ');
    // Wider than the window means a horizontal scroll bar (tests read these).
    document.body.dataset.scrollWidth = String(document.documentElement.scrollWidth);
    document.body.dataset.clientWidth = String(document.documentElement.clientWidth);
    var plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    document.body.dataset.chartsRendered = String(plots.filter(function (p) {
      return p.querySelector('.main-svg'); }).length);
  }, 500);
});
</script>"""


def slug(name: object) -> str:
    """A name usable as an HTML id and a file name."""
    return "".join(c if c.isalnum() else "_" for c in str(name))


class Page:
    """An HTML page built from headings, paragraphs, tables and Plotly figures."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.figures: list[tuple[str, go.Figure]] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, cls: str | None = None) -> None:
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{attr}>{html.escape(text)}</p>")

    def table(self, frame: pd.DataFrame, formats: dict[str, str] | None = None, more: pd.DataFrame | None = None,
              more_formats: dict[str, str] | None = None, text: tuple[str, ...] = ()) -> None:
        """A table; ``more``: a wider one behind an expander, scrolling within its own box so
        that the page itself never scrolls sideways; ``text``: columns that wrap (names),
        where every other one keeps to one line."""
        if text:
            self.parts.append(_board_table(frame, text))
        else:
            self.parts.append(_html_table(frame, formats or {}))
        if more is not None:
            self.parts.append(f"<details><summary>every column ({len(more.columns)})</summary><div class='wide'>"
                              f"{_html_table(more, more_formats or {})}</div></details>")

    def figure(self, fig: go.Figure, name: str) -> None:
        self.figures.append((name, fig))
        self.parts.append(pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=name,
                                      config={"displaylogo": False, "responsive": True}))

    def render(self) -> str:
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{STYLE}</style>{WATCH_ERRORS}<script>{get_plotlyjs()}</script></head>"
                f"<body><h1>{html.escape(self.title)}</h1>{''.join(self.parts)}</body></html>")

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return path


def _html_table(frame: pd.DataFrame, formats: dict[str, str]) -> str:
    shown = frame.copy()
    for column, fmt in formats.items():
        if column in shown:
            shown[column] = shown[column].map(lambda v, f=fmt: "n/a" if pd.isna(v) else f.format(v))
    return shown.to_html(index=False, na_rep="n/a", escape=True, border=0)


def _board_table(frame: pd.DataFrame, text: tuple[str, ...]) -> str:
    """A table of already-formatted cells; the ``text`` columns may wrap anywhere."""
    head = "".join(f"<th class='text'>{html.escape(str(c))}</th>" if c in text else f"<th>{html.escape(str(c))}</th>"
                   for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td class='text'>{html.escape(str(v))}</td>" if c in text
                                     else f"<td>{html.escape(str(v))}</td>"
                                     for c, v in zip(frame.columns, row, strict=True))
                   + "</tr>" for row in frame.itertuples(index=False))
    return f"<table class='board'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def export_images(page: Page, folder: Path, formats: tuple[str, ...] = ("png", "svg")) -> str:
    """Write each figure as static images with kaleido (one browser session); say why not when it cannot."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return "static images skipped: kaleido is not installed (pip install kaleido)"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(fig, folder / f"{name}.{fmt}") for name, fig in page.figures for fmt in formats]
    try:
        pio.write_images([fig for fig, _ in jobs], [path for _, path in jobs], width=1100,
                         height=[fig.layout.height or 500 for fig, _ in jobs])
    except Exception as exc:  # kaleido needs Chrome or Chromium; without one the HTML report still stands
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"static images skipped: {reason} (kaleido needs Chrome or Chromium installed)"
    return f"static images: {len(jobs)} files in {folder}"
