"""What every ``%pienteger`` subcommand uses: the magics it is given, and how it shows a table."""

from __future__ import annotations

import html
from typing import Any, Protocol

from .failures import CellFailure


class PientegerMagics(Protocol):
    """What a subcommand uses of the magics (``magics.PientegerMagics``, which calls in here)."""

    shell: Any
    emulator: Any
    errors: Any
    _saved_settings: tuple[Any, Any] | None
    listed_models: dict[str, list[str]]

    @property
    def jobs(self) -> Any: ...

    def client(self) -> Any: ...

    def fail(self, exc: BaseException, *, what: str = ...) -> CellFailure: ...

    def pienteger(self, line: str, cell: str | None = None) -> None: ...

    def complete_cell(self, line: str, cell: str) -> Any: ...


def show(magics: PientegerMagics, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
    from .render import sink_for_shell

    sink_for_shell(magics.shell).final(data, metadata or {})


def table_bundle(headers: list[str], rows: list[tuple[Any, ...]]) -> dict[str, str]:
    """A small table as HTML, Markdown and aligned plain text (no pandas needed)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    plain = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    plain += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in r) + "</tr>"
        for r in cells
    )

    def md(c: str) -> str:
        return c.replace("|", "\\|")

    markdown = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    markdown += ["| " + " | ".join(md(c) for c in r) + " |" for r in cells]
    return {
        "text/plain": "\n".join(plain),
        "text/html": f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
        "text/markdown": "\n".join(markdown),
    }


__all__ = ["PientegerMagics", "show", "table_bundle"]
