"""``%pienteger explain``, ``jobs`` and ``stop``: ask about a failed cell; background completions."""

from __future__ import annotations

import shlex

from IPython.core.error import UsageError

from .command_kit import PientegerMagics, show, table_bundle

EXPLAIN_INSTRUCTION = (
    "This Python notebook cell failed. Explain briefly, in Markdown, why it failed and how to fix it; "
    "show corrected code if it helps."
)
# Long enough for an explanation with a short code block; the service's own default (16) is not.
EXPLAIN_MAX_TOKENS = 400


def explain_prompt(source: str, error: str) -> str:
    return f"{EXPLAIN_INSTRUCTION}\n\nCell:\n```python\n{source.rstrip()}\n```\n\nError:\n```\n{error}\n```\n\nExplanation:\n"


def cmd_explain(magics: PientegerMagics, words: list[str]) -> None:
    """Send the last failed cell's source and error; the answer streams in as Markdown."""
    failed = magics.errors.last()
    if failed is None:
        print("no cell has failed yet in this kernel: run the cell that raises, then %pienteger explain")
        return
    options = ["-f", "markdown", "--no-interpolate", *words]
    if not any(w == "--max-tokens" or w.startswith("--max-tokens=") for w in words):
        options += ["--max-tokens", str(EXPLAIN_MAX_TOKENS)]
    magics.complete_cell(" ".join(shlex.quote(w) for w in options),
                         explain_prompt(failed.source, failed.error))


def cmd_jobs(magics: PientegerMagics, words: list[str]) -> None:
    if words:
        raise UsageError("%pienteger jobs takes no arguments")
    rows = magics.jobs.rows()
    if not rows:
        print("no background jobs yet: %%pienteger --background starts one")
        return
    show(magics, table_bundle(["id", "model", "state", "tokens", "seconds"], rows))


def cmd_stop(magics: PientegerMagics, words: list[str]) -> None:
    if len(words) > 1:
        raise UsageError("%pienteger stop takes one job id, or all (the default)")
    try:
        stopped = magics.jobs.stop(words[0] if words else None)
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    if stopped:
        print(f"stopping job{'s' if len(stopped) > 1 else ''} {', '.join(map(str, stopped))}")
    else:
        print("no running background job to stop")


__all__ = ["EXPLAIN_INSTRUCTION", "cmd_explain", "cmd_jobs", "cmd_stop", "explain_prompt"]
