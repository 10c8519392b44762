"""%%pienteger --background in a real InteractiveShell against the emulator: the cell returns
at once, text streams into the job's Output widget from a thread, Stop (the button or
%pienteger stop) ends it with the text kept, -o is set when done, several run at once, an
interrupt of the main thread leaves them running, errors are one line in their own output."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import TEST_KEY
from IPython.utils.capture import capture_output

from pienteger_nb import usage
from pienteger_nb.types import Completion


@pytest.fixture
def slow(env_emulator: Any) -> Any:
    """Streams that last until stopped: 20 tokens a second, texts run to max_tokens."""
    env_emulator.tokens_per_second = 20
    env_emulator.natural_end = False
    return env_emulator


def output_text(job: Any) -> str:
    parts = []
    for out in job.output.outputs:
        parts.append(out.get("text", "") if out["output_type"] == "stream"
                     else out["data"].get("text/markdown") or out["data"].get("text/plain", ""))
    return "".join(parts)


def start(ip: Any, magics: Any, options: str, prompt: str = "Tell a long story") -> Any:
    before = set(magics.jobs.jobs)
    with capture_output() as cap:
        res = ip.run_cell(f"%%pienteger --background {options}\n{prompt}", store_history=True)
    assert res.success, res.error_in_exec
    assert TEST_KEY not in cap.stdout + cap.stderr
    (new,) = set(magics.jobs.jobs) - before
    return magics.jobs.jobs[new]


def test_the_cell_returns_while_the_text_streams_and_stop_keeps_it(ip: Any, magics: Any, slow: Any) -> None:
    job = start(ip, magics, "--max-tokens 2000 -o story")
    assert job.state == "running"  # the cell has returned; the job has not
    assert job.wait_for_tokens(3, timeout=10)
    job.stop_button.click()  # what the page's Stop does
    assert job.wait(10)
    assert job.state == "stopped"
    assert output_text(job).strip()  # the partial text stays
    assert "story" not in ip.user_ns  # -o only for a finished completion
    assert "stopped" in job.status.value and job.stop_button.disabled
    rows = usage()
    assert rows["status"].astype(str).tolist() == ["cancelled"]


def test_o_is_set_when_done_and_the_row_carries_the_starting_cell(ip: Any, magics: Any, env_emulator: Any) -> None:
    job = start(ip, magics, "-m text-ada-001 --max-tokens 8 -o bg_answer")
    cell = ip.execution_count - 1
    ip.run_cell("x_after = 1 + 1", store_history=True)  # the kernel is free for other cells
    assert job.wait(10) and job.state == "done"
    answer = ip.user_ns.pop("bg_answer")
    assert isinstance(answer, Completion) and answer.usage.completion_tokens == 8
    assert output_text(job) == answer.text
    assert job.tokens == 8 and "8 tokens" in job.status.value
    row = usage().iloc[-1]
    assert row["source"] == "magic" and row["status"] == "ok" and row["model"] == "text-ada-001"
    assert int(row["execution_count"]) == cell


def test_several_jobs_run_at_once_and_stop_all_ends_them(ip: Any, magics: Any, slow: Any) -> None:
    jobs = [start(ip, magics, "--max-tokens 2000") for _ in range(3)]
    assert all(j.wait_for_tokens(2, timeout=10) for j in jobs)  # all three streaming together
    with capture_output() as cap:
        ip.run_cell("%pienteger jobs")
    table = cap.outputs[-1].data["text/plain"]
    assert table.count("running") == 3 and "tokens" in table
    with capture_output() as cap:
        ip.run_cell("%pienteger stop all")
    assert "stopping jobs" in cap.stdout
    assert all(j.wait(10) and j.state == "stopped" for j in jobs)
    with capture_output() as cap:
        ip.run_cell("%pienteger stop")
    assert "no running background job" in cap.stdout


def test_stop_by_id_stops_only_that_job(ip: Any, magics: Any, slow: Any) -> None:
    first, second = start(ip, magics, "--max-tokens 2000"), start(ip, magics, "--max-tokens 2000")
    assert first.wait_for_tokens(1, timeout=10) and second.wait_for_tokens(1, timeout=10)
    ip.run_cell(f"%pienteger stop {first.id}")
    assert first.wait(10) and first.state == "stopped"
    assert second.state == "running"
    res = ip.run_cell("%pienteger stop 999")
    assert not res.success and "no background job" in str(res.error_in_exec)


def test_an_interrupt_of_the_kernel_leaves_jobs_running(ip: Any, magics: Any, slow: Any) -> None:
    job = start(ip, magics, "--max-tokens 2000")
    assert job.wait_for_tokens(1, timeout=10)
    res = ip.run_cell("raise KeyboardInterrupt")  # Interrupt Kernel reaches the main thread only
    assert not res.success
    seen = job.tokens
    assert job.wait_for_tokens(seen + 2, timeout=10) and job.state == "running"


def test_an_error_is_one_line_in_the_jobs_own_output(ip: Any, magics: Any, env_emulator: Any) -> None:
    job = start(ip, magics, "-m no-such-model --max-tokens 5")
    assert job.wait(10) and job.state == "error"
    (line,) = [o["text"] for o in job.output.outputs if o["output_type"] == "stream"]
    assert line.count("\n") == 1 and "404" in line and "no-such-model" in line
    assert "Traceback" not in line and TEST_KEY not in line


def test_bad_options_fail_the_cell_and_start_nothing(ip: Any, magics: Any, env_emulator: Any) -> None:
    res = ip.run_cell("%%pienteger --background -t 9\nHi")
    assert not res.success and "temperature" in str(res.error_in_exec)
    res = ip.run_cell("%%pienteger --background --insert\nHi")
    assert not res.success and "--insert" in str(res.error_in_exec)
    assert magics.jobs.jobs == {} and env_emulator.requests == []


def test_the_key_is_in_no_widget_state(ip: Any, magics: Any, env_emulator: Any) -> None:
    import ipywidgets

    job = start(ip, magics, "--max-tokens 5")
    assert job.wait(10)
    state = str(ipywidgets.Widget.get_manager_state())
    assert TEST_KEY not in state and TEST_KEY[-6:] not in state
