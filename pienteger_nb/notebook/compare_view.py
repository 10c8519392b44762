"""The side-by-side table ``%%pienteger --compare`` shows: a column per model, a row per setting.

Each cell holds the completion's text (wrapped, so long answers stay readable in a narrow
notebook) and under it a small line with tokens, seconds and cost; a failed combination shows
its error in its own cell. A plain-text copy serves terminals and ``text/plain`` readers.
"""

from __future__ import annotations

import html
from typing import Any

# Long texts wrap inside their column; each cell scrolls past this height rather than pushing
# the table off the screen.
_TABLE_STYLE = "border-collapse:collapse; table-layout:fixed; width:100%"
_CELL_STYLE = (
    "vertical-align:top; text-align:left; padding:6px 8px; "
    "border:1px solid var(--jp-border-color2, #ddd)"
)
_TEXT_STYLE = "white-space:pre-wrap; overflow-wrap:anywhere; max-height:24em; overflow:auto"
_NOTE_STYLE = "color:var(--jp-ui-font-color2, #666); font-size:0.85em; margin-top:4px"
_ERROR_STYLE = "color:var(--jp-error-color1, #d32f2f); white-space:pre-wrap; overflow-wrap:anywhere"


def _missing(value: Any) -> bool:
    import pandas as pd  # the frame is pandas already

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list-like cell: not missing
        return False


def setting_label(temperature: Any, seed: Any) -> str:
    parts = [f"temperature {'default' if _missing(temperature) else f'{float(temperature):g}'}"]
    if not _missing(seed):
        parts.append(f"seed {int(seed)}")
    return ", ".join(parts)


def cost_text(cost: Any) -> str:
    return "unpriced" if _missing(cost) else f"${float(cost):.4f}"


def note_line(row: dict[str, Any]) -> str:
    """``5 → 16 tokens · 0.21 s · unpriced``"""
    tokens = "? → ?" if _missing(row.get("prompt_tokens")) else (
        f"{int(row['prompt_tokens'])} → {int(row['completion_tokens'])}"
    )
    latency = "" if _missing(row.get("latency_s")) else f" · {float(row['latency_s']):.2f} s"
    return f"{tokens} tokens{latency} · {cost_text(row.get('cost'))}"


def compare_bundle(frame: Any) -> dict[str, str]:
    """The comparison frame as ``text/html`` (the table) and ``text/plain``."""
    records = frame.to_dict("records")
    models = list(dict.fromkeys(r["model"] for r in records))
    settings = list(dict.fromkeys(setting_label(r["temperature"], r["seed"]) for r in records))
    grid = {(setting_label(r["temperature"], r["seed"]), r["model"]): r for r in records}

    head = "".join(f"<th style='{_CELL_STYLE}'>{html.escape(m)}</th>" for m in models)
    body = []
    plain = []
    for setting in settings:
        cells = []
        for model in models:
            row = grid.get((setting, model))
            plain.append(f"== {model} · {setting}")
            if row is None:
                cells.append(f"<td style='{_CELL_STYLE}'></td>")
                continue
            if row["error"]:
                cells.append(
                    f"<td style='{_CELL_STYLE}' class='pienteger-compare-error'>"
                    f"<div style='{_ERROR_STYLE}'>{html.escape(row['error'])}</div></td>"
                )
                plain.append(f"error: {row['error']}")
                continue
            text = "" if _missing(row["text"]) else str(row["text"])
            cells.append(
                f"<td style='{_CELL_STYLE}'><div style='{_TEXT_STYLE}'>{html.escape(text)}</div>"
                f"<div style='{_NOTE_STYLE}'>{html.escape(note_line(row))}</div></td>"
            )
            plain.append(text)
            plain.append(f"({note_line(row)})")
        body.append(
            f"<tr><th style='{_CELL_STYLE}; width:9em'>{html.escape(setting)}</th>{''.join(cells)}</tr>"
        )
    table = (
        f"<table class='pienteger-compare' style='{_TABLE_STYLE}'>"
        f"<thead><tr><th style='{_CELL_STYLE}; width:9em'></th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    return {"text/html": table, "text/plain": "\n".join(plain)}


__all__ = ["compare_bundle", "cost_text", "note_line", "setting_label"]
