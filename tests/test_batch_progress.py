"""Progress displays: the text line (stderr, throttled) and the widget bar, read directly."""

from __future__ import annotations

import io

import pytest

from pienteger_nb.batch.progress import (
    Progress,
    TextProgress,
    WidgetProgress,
    describe,
    make_progress,
)
from pienteger_nb.kernel import in_kernel


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_describe_counts_rate_eta_and_total_time():
    assert describe(0, 100, 0, 0.0) == "0/100"
    assert describe(50, 100, 0, 10.0) == "50/100 · 5.0/s · ETA 10s"
    assert describe(50, 100, 1, 10.0) == "50/100 · 1 error · 5.0/s · ETA 10s"
    assert describe(10, 1000, 3, 2.0) == "10/1000 · 3 errors · 5.0/s · ETA 3m18s"
    assert describe(100, 100, 0, 20.0, finished=True) == "100/100 · 5.0/s · in 20s"


def test_text_progress_rewrites_one_line_at_a_bounded_rate():
    clock, out = Clock(), io.StringIO()
    p = TextProgress(10, stream=out, interval=0.5, clock=clock)
    for done in range(1, 6):  # no time passes: only the first update is drawn
        p.update(done)
    assert out.getvalue().count("\r") == 1
    clock.t += 1.0
    p.update(6, 1)
    assert out.getvalue().count("\r") == 2
    clock.t += 1.0
    p.update(10, 1)
    p.close()
    text = out.getvalue()
    assert text.endswith("\n")
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith("batch 10/10 · 1 error · ")
    assert "in 2.0s" in last
    p.close()  # closing twice draws nothing more
    assert out.getvalue() == text


def test_text_progress_pads_over_a_longer_previous_line():
    clock, out = Clock(), io.StringIO()
    p = TextProgress(1000, stream=out, interval=0.0, clock=clock)
    clock.t += 1
    p.update(10, 3)
    p.update(11, 0)
    first, second = out.getvalue().split("\r")[1:]
    assert len(second) >= len(first)


def test_widget_progress_values_and_final_style():
    clock = Clock()
    p = WidgetProgress(4, display=False, interval=0.1, clock=clock)
    assert (p.bar.value, p.bar.max) == (0, 4)
    assert p.label.value == "0/4"
    clock.t += 1
    p.update(2, 1)
    assert p.bar.value == 2
    assert p.label.value.startswith("2/4 · 1 error · 2.0/s · ETA")
    clock.t += 1
    p.update(4, 1)
    p.close(note="interrupted")
    assert p.bar.value == 4
    assert p.bar.bar_style == "warning"
    assert p.label.value.endswith("· interrupted")


def test_widget_progress_success_style():
    p = WidgetProgress(1, display=False)
    p.update(1, 0)
    p.close()
    assert p.bar.bar_style == "success"


def test_progress_false_shows_nothing(capsys):
    p = make_progress(False, 3)
    assert type(p) is Progress
    p.update(3)
    p.close()
    assert capsys.readouterr() == ("", "")


def test_outside_a_kernel_progress_is_a_text_line_on_stderr(capsys):
    assert not in_kernel()
    p = make_progress(True, 2)
    assert isinstance(p, TextProgress)
    p.update(2)
    p.close()
    out, err = capsys.readouterr()
    assert out == ""
    assert "batch 2/2" in err


def test_in_a_kernel_progress_is_a_displayed_widget(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    ip = InteractiveShell.instance()
    # What ipykernel's shell carries: its application's config section.
    monkeypatch.setitem(ip.config, "IPKernelApp", Config())
    assert in_kernel()
    with capture_output() as cap:
        p = make_progress(True, 5)
    assert isinstance(p, WidgetProgress)
    assert any("application/vnd.jupyter.widget-view+json" in o.data for o in cap.outputs)
    p.update(5)
    p.close()
    assert p.bar.value == 5


def test_unknown_progress_mode_is_refused():
    with pytest.raises(ValueError, match="progress must be"):
        make_progress("bar", 1)
