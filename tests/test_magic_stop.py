"""``--stop`` takes one to four values after one flag as well as repeated flags (the contract)."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError

from pienteger_nb.notebook.args import take_values


@pytest.mark.parametrize(
    ("line", "stops", "rest"),
    [
        (["--stop", "END", "STOP"], ["END", "STOP"], []),
        (["--stop", "END", "--stop", "STOP"], ["END", "STOP"], []),
        (["--stop", "A", "B", "--stop", "C", "-t", "0"], ["A", "B", "C"], ["-t", "0"]),
        (["--stop", "---", "x", "--max-tokens", "3"], ["---", "x"], ["--max-tokens", "3"]),
        (["--stop=A", "-t", "0"], ["A"], ["-t", "0"]),
        (["--stop", "A", "B", "C", "D"], ["A", "B", "C", "D"], []),
    ],
)
def test_stop_values_after_one_flag_and_repeated(line: list[str], stops: list[str], rest: list[str]) -> None:
    left, taken = take_values(line)
    assert taken["--stop"] == stops and left == rest


def test_five_values_after_one_flag_is_one_clear_line() -> None:
    with pytest.raises(UsageError, match="--stop takes one to 4 values"):
        take_values(["--stop", "a", "b", "c", "d", "e"])


def test_the_magic_sends_several_stops_after_one_flag(ip: Any, env_emulator: Any) -> None:
    result = ip.run_cell('%%pienteger --max-tokens 3 --stop "\\n\\n" "###" 4. -t 0\nHi', silent=True)
    assert result.success, result.error_in_exec
    assert env_emulator.requests[-1].body["stop"] == ["\n\n", "###", "4."]
    assert env_emulator.requests[-1].body["temperature"] == 0
