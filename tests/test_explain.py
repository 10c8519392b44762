"""Cell references in prompts ({In[n]}, {Out[n]}, {Err[n]}, {_}), the errors the extension
keeps (bounded, key masked), %pienteger explain and --insert, in a real InteractiveShell
against the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import TEST_KEY
from IPython.utils.capture import capture_output

from pienteger_nb import config, usage
from pienteger_nb.notebook.cells import MAX_CELLS, MAX_CHARS, CellErrors


@pytest.fixture
def magics(ip: Any) -> Any:
    m = ip.magics_manager.registry["PientegerMagics"]
    m.errors = CellErrors()
    ip.events.callbacks["post_run_cell"] = [
        cb for cb in ip.events.callbacks["post_run_cell"] if getattr(cb, "__name__", "") != "after_cell"
    ]
    ip.events.register("post_run_cell", m.errors.after_cell)
    return m


def cell(ip: Any, source: str) -> tuple[Any, Any]:
    with capture_output() as cap:
        res = ip.run_cell(source, store_history=True)
    return res, cap


def sent_prompt(emulator: Any) -> str:
    return str(emulator.requests[-1].body["prompt"])


def test_in_out_and_underscore_fill_from_the_history(ip: Any, magics: Any, env_emulator: Any) -> None:
    cell(ip, "def area(r):\n    return 3.14 * r * r")
    n_in = ip.execution_count - 1
    cell(ip, "21 * 2")
    n_out = ip.execution_count - 1
    res, _ = cell(ip, f"%%pienteger --max-tokens 3\nReview {{In[{n_in}]}} given {{Out[{n_out}]}} and {{_}}.")
    assert res.success
    assert sent_prompt(env_emulator) == "Review def area(r):\n    return 3.14 * r * r given 42 and 42."


def test_err_fills_the_error_text_of_a_cell_that_raised(ip: Any, magics: Any, env_emulator: Any) -> None:
    res, _ = cell(ip, "items = [1, 2]\nitems[5]")
    assert not res.success
    n = ip.execution_count - 1
    res, _ = cell(ip, f"%%pienteger --max-tokens 3\nWhy: {{Err[{n}]}} / {{Err[{n + 100}]}}")
    assert res.success
    prompt = sent_prompt(env_emulator)
    assert "IndexError: list index out of range" in prompt and "items[5]" in prompt
    assert "interactiveshell.py" not in prompt  # IPython's own frame is left out
    assert f"{{Err[{n + 100}]}}" in prompt  # a cell that did not fail stays as typed


def test_errors_are_kept_bounded_and_never_hold_the_key(ip: Any, magics: Any, env_emulator: Any) -> None:
    cell(ip, f"raise ValueError('bad key {TEST_KEY}')")
    text = magics.errors[ip.execution_count - 1]
    assert "ValueError: bad key ****" in text and TEST_KEY not in text and TEST_KEY[:-4] not in text
    assert TEST_KEY not in magics.errors.last().source
    cell(ip, "raise ValueError('x' * 10000)")
    text = magics.errors[ip.execution_count - 1]
    assert len(text) <= MAX_CHARS and text.endswith("x")  # the end, where the message is, is kept
    errors = CellErrors(max_cells=3)
    for i in range(5):
        errors.add(i, "1/0", ZeroDivisionError("division by zero"))
    assert list(errors) == [2, 3, 4] and MAX_CELLS >= 50


def test_explain_sends_the_last_failed_cell_and_shows_markdown(ip: Any, magics: Any, env_emulator: Any) -> None:
    cell(ip, "import math\nmath.sqrt(-1)")
    cell(ip, "ok = 1")  # a later cell that worked does not hide the failure
    res, cap = cell(ip, "%pienteger explain")
    assert res.success, res.error_in_exec
    body = env_emulator.requests[-1].body
    assert "math.sqrt(-1)" in body["prompt"] and "ValueError: math domain error" in body["prompt"]
    assert "Explain" in body["prompt"] and body["max_tokens"] == 400
    finals = [o for o in cap.outputs if "text/markdown" in o.data]
    assert finals and finals[-1].data["text/markdown"].strip()
    assert usage().iloc[-1]["status"] == "ok"  # a ledger row like any completion


def test_explain_takes_options_and_is_not_itself_explained(ip: Any, magics: Any, env_emulator: Any) -> None:
    cell(ip, "undefined_name_here")
    res, _ = cell(ip, "%pienteger explain -m text-ada-001 --max-tokens 7")
    assert res.success
    assert env_emulator.requests[-1].body["model"] == "text-ada-001"
    assert env_emulator.requests[-1].body["max_tokens"] == 7
    env_emulator.queue_fault("status", status=500, times=5)
    res, _ = cell(ip, "%pienteger explain")
    assert not res.success  # the explain failed...
    assert "undefined_name_here" in magics.errors.last().source  # ...but is not the failure to explain


def test_explain_with_no_failed_cell_says_so(ip: Any, magics: Any, env_emulator: Any) -> None:
    res, cap = cell(ip, "%pienteger explain")
    assert res.success
    assert "no cell has failed yet" in cap.stdout
    assert env_emulator.requests == []


def test_insert_puts_code_in_the_next_cell(ip: Any, magics: Any, env_emulator: Any) -> None:
    ip.rl_next_input = None
    res, _ = cell(ip, "%%pienteger -f code --insert --max-tokens 6 -m text-ada-001\n# python: add two numbers")
    assert res.success
    completion = env_emulator.requests[-1]
    assert completion is not None
    assert isinstance(ip.rl_next_input, str) and ip.rl_next_input.strip()
    assert not ip.rl_next_input.startswith("%%markdown")


def test_insert_makes_a_markdown_cell_for_markdown(ip: Any, magics: Any, env_emulator: Any) -> None:
    ip.rl_next_input = None
    res, _ = cell(ip, "%%pienteger --insert --max-tokens 6 -o ins\nWrite a heading")
    assert res.success
    text = ip.user_ns.pop("ins").text
    assert ip.rl_next_input == "%%markdown\n" + text.strip("\n")
    config.set_kernel("format", "text")
    try:
        cell(ip, "%%pienteger --insert --max-tokens 6 -o ins\nWrite a heading")
        assert ip.rl_next_input == ip.user_ns.pop("ins").text
    finally:
        config.clear_kernel("format")
