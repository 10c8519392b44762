"""How a batch's frame shows in a notebook: the text columns readable, the rest a scroll away.

A batch frame has a dozen columns; rendered as a plain DataFrame, JupyterLab squeezes the
prompt and the text to a word a line to fit them all. A frame marked here (``frame.attrs``,
which pandas carries through ``head()``, slicing and copies) renders with the prompt and text
wrapped in wide columns, the numbers after them, and the table scrolling sideways instead of
squeezing. Every other DataFrame renders exactly as pandas renders it.
"""

from __future__ import annotations

import html
from typing import Any

MARK = "pienteger_table"
WIDE = ("prompt", "text", "error")  # wrapped, given room; everything else keeps one line
_registered: set[int] = set()  # ids of the shells whose formatters know about marked frames

_STYLE = """<style>
.pienteger-table-scroll {overflow-x: auto; max-width: 100%;}
.pienteger-table-scroll table {table-layout: auto;}
.pienteger-table-scroll td, .pienteger-table-scroll th {white-space: nowrap; vertical-align: top;
  text-align: left;}
.pienteger-table-scroll td.pienteger-wide {white-space: pre-wrap; min-width: 18em; max-width: 36em;}
</style>"""


def mark(frame: Any) -> Any:
    """``frame``, marked to render as a batch table; the formatters are registered if in IPython."""
    frame.attrs[MARK] = "batch"
    register()
    return frame


def frame_html(frame: Any, *, max_rows: int = 60) -> str:
    """The frame as a scrollable HTML table, wide text columns wrapped."""
    shown = frame if len(frame) <= max_rows else frame.head(max_rows)
    wide = [i for i, col in enumerate(shown.columns) if str(col) in WIDE]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ["", *shown.columns])
    rows = []
    for label, values in zip(shown.index, shown.itertuples(index=False, name=None)):
        cells = [f"<th>{html.escape(str(label))}</th>"]
        for i, value in enumerate(values):
            text = "" if _is_na(value) else str(value)
            css = ' class="pienteger-wide"' if i in wide else ""
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (f"<p>{len(frame) - max_rows} more rows not shown ({len(frame)} rows × {len(frame.columns)} "
            "columns)</p>") if len(frame) > max_rows else f"<p>{len(frame)} rows × {len(frame.columns)} columns</p>"
    return (f'{_STYLE}<div class="pienteger-table-scroll"><table class="dataframe">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{more}")


def _is_na(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array in a cell: not a missing value
        return False


def _html_for(frame: Any) -> str | None:
    if getattr(frame, "attrs", {}).get(MARK) == "batch":
        return frame_html(frame)
    return frame._repr_html_()  # type: ignore[no-any-return]  # pandas's own, for every other frame


def register() -> None:
    """Teach the running IPython's HTML formatter about marked frames (once per shell)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or id(shell) in _registered:
        return
    import pandas as pd

    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, _html_for)
    _registered.add(id(shell))


__all__ = ["frame_html", "mark", "register"]
