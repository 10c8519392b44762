"""What a first hour with the product showed (issue 15), each fixed where a user saw it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import TEST_KEY
from IPython.utils.capture import capture_output

from pienteger_nb import config


def run(ip: Any, source: str) -> tuple[Any, Any, list[str]]:
    with capture_output() as cap:
        res = ip.run_cell(source, silent=True)
    error = "" if res.error_in_exec is None else str(res.error_in_exec)
    lines = [line for line in (cap.stdout + cap.stderr + error).splitlines() if line.strip()]
    blob = cap.stdout + cap.stderr + json.dumps([o.data for o in cap.outputs], default=str) + error
    assert TEST_KEY not in blob
    return res, cap, lines


def test_emulator_start_says_its_text_is_unrelated_and_takes_its_speed_options(ip: Any, magics: Any) -> None:
    res, cap, _ = run(ip, "%pienteger emulator start --tokens-per-second 7 --latency 0.25 --rpm 30")
    assert res.success
    assert "unrelated to the prompt" in cap.stdout
    emu = magics.emulator
    assert (emu.tokens_per_second, emu.latency, emu.rpm) == (7, 0.25, 30)
    run(ip, "%pienteger emulator stop")


def test_help_documents_the_emulators_speed_options(ip: Any, magics: Any) -> None:
    _, cap, _ = run(ip, "%pienteger help")
    for option in ("--latency", "--tokens-per-second", "--rpm"):
        assert option in cap.stdout


def test_the_usage_line_marks_the_emulator(ip: Any, magics: Any, env_emulator: Any) -> None:
    res, cap, _ = run(ip, "%%pienteger --max-tokens 3\nHi")
    assert res.success
    lines = [o.data["text/plain"] for o in cap.outputs if o.metadata.get("pienteger", {}).get("usage_line")]
    line = lines[-1]  # the live line's last state: the finished one
    assert line.startswith("text-davinci-003 · ") and line.endswith(" · emulator")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("%%pienteger -t hot\nx", "bad option -t/--temperature: 'hot' is not a number"),
        ("%%pienteger --max-tokens many\nx", "bad option --max-tokens: 'many' is not a whole number"),
        ("%%pienteger -t 7\nx", "bad option: temperature"),
        ("%pienteger config temperature=7", "bad setting temperature: "),
        ("%pienteger config max_tokens=lots", "bad setting max_tokens: "),
    ],
)
def test_option_and_setting_mistakes_share_one_style(
    ip: Any, magics: Any, env_emulator: Any, source: str, expected: str
) -> None:
    res, _, _ = run(ip, source)
    assert res.success is False
    assert res.error_in_exec.__class__.__name__ == "UsageError"
    message = str(res.error_in_exec)
    assert message.startswith(expected), message
    assert len(message.splitlines()) == 1
    assert not env_emulator.requests  # nothing was sent


def test_config_warns_about_a_model_the_service_did_not_list(ip: Any, magics: Any, env_emulator: Any) -> None:
    # Before any list is at hand: no warning, and no call made to find out.
    _, cap, _ = run(ip, "%pienteger config model=nope-model")
    assert "warning" not in cap.stdout and not env_emulator.requests
    run(ip, "%pienteger models")
    res, cap, _ = run(ip, "%pienteger config model=text-davinci-03")
    assert res.success and config.get("model") == "text-davinci-03"  # set all the same
    assert "not in the service's list" in cap.stdout and "did you mean text-davinci-003?" in cap.stdout
    _, cap, _ = run(ip, "%pienteger config model=text-ada-001")
    assert "warning" not in cap.stdout


def test_usage_shows_every_column_where_pandas_would_hide_some(ip: Any, magics: Any, env_emulator: Any) -> None:
    import pandas as pd

    assert run(ip, "%%pienteger --max-tokens 3\nHi")[0].success
    with pd.option_context("display.max_columns", 3):  # as in a narrow terminal
        res, cap, _ = run(ip, "%pienteger usage")
    assert res.success
    (plain,) = [o.data["text/plain"] for o in cap.outputs if "text/plain" in o.data]
    for column in ("calls", "errors", "completion_tokens", "total_tokens", "p95_latency_s"):
        assert column in plain
    assert "columns]" not in plain and "..." not in plain


def test_a_batch_frame_renders_its_text_wide_and_scrolls_the_rest(ip: Any, env_emulator: Any) -> None:
    import pandas as pd

    from pienteger_nb import complete_many

    frame = complete_many(["A long prompt " * 8, "Another"], max_tokens=5, progress=False)
    html = ip.display_formatter.format(frame)[0]["text/html"]
    assert "pienteger-table-scroll" in html and "overflow-x: auto" in html
    assert html.count('class="pienteger-wide"') == 3 * len(frame)  # prompt, text, error
    assert html.index("<th>prompt</th>") < html.index("<th>prompt_tokens</th>")
    # Slices keep the look; any other DataFrame renders as pandas renders it.
    assert "pienteger-table-scroll" in ip.display_formatter.format(frame.head(1))[0]["text/html"]
    plain = pd.DataFrame({"a": [1, 2]})
    assert ip.display_formatter.format(plain)[0]["text/html"] == plain._repr_html_()
