"""PromptForm headless: buttons clicked from Python, traits and Output.outputs read back, the
emulator answering over loopback. No sleeps: threads are joined and events waited on, with timeouts."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import ipywidgets as W
import pytest
from conftest import TEST_KEY

from pienteger_nb import Client, PromptForm
from pienteger_nb.types import CallRecord

WAIT = 15.0  # seconds: a generous bound for joins on a busy 2-core machine, never a sleep


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def client(emulator: Any, records: list[CallRecord]) -> Client:
    return Client(api_key=TEST_KEY, base_url=emulator.url, on_call=records.append, max_retries=0)


@pytest.fixture
def forms() -> Iterator[list[PromptForm]]:
    made: list[PromptForm] = []
    yield made
    for form in made:
        form.close()


@pytest.fixture
def form(client: Client, forms: list[PromptForm]) -> PromptForm:
    f = PromptForm(client)
    forms.append(f)
    return f


def _text(form: PromptForm) -> str:
    return "".join(o["data"]["text/plain"] for o in form.output.outputs)


def _first_paint(form: PromptForm) -> threading.Event:
    painted = threading.Event()
    form.output.observe(lambda change: painted.set() if change["new"] else None, "outputs")
    return painted


def _completion_calls(records: list[CallRecord]) -> list[CallRecord]:
    return [r for r in records if r.endpoint == "completions"]


def test_models_fill_the_dropdown(form: PromptForm, emulator: Any) -> None:
    assert form.model in form._model_row.children
    assert {"text-davinci-003", "gpt-3.5-turbo-instruct", "text-ada-001"} <= set(form.model.options)
    assert form.model.value == "text-davinci-003"
    assert form.status_text.startswith("Ready: ")
    assert form.submit_button.disabled is False
    assert form.stop_button.disabled is True


def test_submit_streams_and_the_output_equals_the_stream(form: PromptForm, emulator: Any,
                                                         records: list[CallRecord]) -> None:
    form.prompt.value = "Once upon a time"
    form.max_tokens.value = 40
    form.temperature.value = 0
    form.submit_button.click()
    assert form.submit_button.disabled is True  # disabled at once, while the thread runs
    assert form.wait(WAIT)
    result = form.result
    assert result is not None
    assert len(form.output.outputs) == 1  # one output, replaced in place, not one per token
    assert form.output.outputs[0]["data"]["text/markdown"] == result.text
    assert _text(form) == result.text != ""
    (call,) = _completion_calls(records)
    assert call.source == "form" and call.status == "ok" and call.stream is True
    assert call.text == result.text
    body = emulator.requests[-1].body
    assert body["stream"] is True and body["max_tokens"] == 40 and body["temperature"] == 0
    assert body["model"] == "text-davinci-003" and body["prompt"] == "Once upon a time"
    assert form.submit_button.disabled is False and form.stop_button.disabled is True


def test_status_line_gives_the_figures(form: PromptForm) -> None:
    form.prompt.value = "Say this is a test"
    form.max_tokens.value = 12
    form.submit()
    assert form.wait(WAIT)
    c = form.result
    assert c is not None
    m = re.fullmatch(r"(\S+) · (\d+) → (\d+) tokens \((\w+)\) · unpriced · ([\d.]+) s · finish: (\w+)",
                     form.status_text)
    assert m, form.status_text
    # The model asked for: the served "text-davinci:003" is the same model spelled otherwise.
    assert m.group(1) == c.requested_model == "text-davinci-003" and c.model == "text-davinci:003"
    assert (int(m.group(2)), int(m.group(3))) == (c.usage.prompt_tokens, c.usage.completion_tokens)
    assert m.group(4) == c.usage.source == "reported"
    assert float(m.group(5)) == pytest.approx(c.latency_s, abs=0.01)
    assert m.group(6) == c.finish_reason
    entry = form.history[-1]
    assert entry["status"] == "ok" and entry["model"] == c.requested_model and entry["prompt"] == "Say this is a test"
    assert entry["completion_tokens"] == c.usage.completion_tokens
    assert "Say this is a test" in form.history_view.value


def test_not_streamed_call_fills_the_output_once(form: PromptForm, emulator: Any) -> None:
    form.stream.value = False
    form.prompt.value = "Hello"
    form.max_tokens.value = 10
    assert form.submit() is not None
    assert form.wait(WAIT)
    assert emulator.requests[-1].body.get("stream") in (None, False)
    assert form.result is not None and _text(form) == form.result.text
    assert "finish: " in form.status_text


def test_stop_and_suffix_fields_reach_the_request(form: PromptForm, emulator: Any) -> None:
    form.prompt.value = "List:"
    form.suffix.value = r"\nThe end."
    form.stop_field.value = r"\n\n, ###"
    form.top_p.value = 0.5
    form.submit()
    assert form.wait(WAIT)
    body = emulator.requests[-1].body
    assert body["stop"] == ["\n\n", "###"]
    assert body["suffix"] == "\nThe end."
    assert body["top_p"] == 0.5


def test_throttle_with_a_fake_clock_sends_first_and_last_only(client: Client, emulator: Any,
                                                               forms: list[PromptForm]) -> None:
    scheduled: list[Any] = []
    form = PromptForm(client, clock=lambda: 100.0, timer=lambda delay, fn: scheduled.append(fn))
    forms.append(form)
    emulator.natural_end = False
    changes: list[Any] = []
    form.output.observe(lambda change: changes.append(change["new"]), "outputs")
    form.prompt.value = "Tell me a story"
    form.max_tokens.value = 60
    form.submit()
    assert form.wait(WAIT)
    assert form.result is not None and form.result.usage.completion_tokens == 60
    # The clock never moves: the first token shows at once, then nothing until the final state.
    assert len(changes) == 2
    assert changes[-1][0]["data"]["text/plain"] == form.result.text
    assert "text/plain" not in changes[0][0]["data"]  # while streaming the text is sent once
    assert len(changes[0][0]["data"]["text/markdown"]) < len(form.result.text)
    assert len(scheduled) == 1  # one trailing paint was scheduled (and never needed to run)
    assert form._painter is not None and form._painter.paints == 2


@pytest.mark.parametrize("how", ["handlers", "buttons"])
def test_stop_while_streaming_keeps_the_partial_text(form: PromptForm, emulator: Any,
                                                     records: list[CallRecord], how: str) -> None:
    emulator.queue_fault("stall", after=5)  # five events, then the stream hangs until closed
    painted = _first_paint(form)
    form.prompt.value = "Once upon a time"
    form.max_tokens.value = 200
    if how == "buttons":
        form.submit_button.click()
    else:
        thread = form.submit()
        assert isinstance(thread, threading.Thread)
    assert painted.wait(WAIT), "no text arrived"
    assert form.running and form.stop_button.disabled is False
    if how == "buttons":
        form.stop_button.click()
    else:
        form.stop()
    assert form.wait(WAIT), "the generation thread did not end after Stop"
    (call,) = _completion_calls(records)
    assert call.status == "cancelled" and call.source == "form"
    assert _text(form) == call.text != ""  # the partial text stays on screen
    assert form.result is None
    assert form.status_text.startswith("Stopped · text-davinci-003 · ")
    assert "(estimated)" in form.status_text and "partial text kept" in form.status_text
    assert form.history[-1]["status"] == "cancelled"
    assert form.submit_button.disabled is False and form.stop_button.disabled is True


def test_stop_before_the_stream_opens_cancels_it(form: PromptForm, emulator: Any,
                                                 records: list[CallRecord]) -> None:
    emulator.latency = 0.3  # the request is in flight when Stop comes
    form.prompt.value = "Hello"
    form.submit()
    form.stop()
    assert form.wait(WAIT)
    statuses = [r.status for r in _completion_calls(records)]
    assert statuses in ([], ["cancelled"])  # never sent, or sent and closed unread
    assert form.status_text.startswith("Stopped")
    assert form.submit_button.disabled is False


def test_stop_while_the_service_has_not_answered_frees_the_form_at_once(
        form: PromptForm, emulator: Any, records: list[CallRecord]) -> None:
    emulator.latency = 0.5  # the request sits in the service: there is no stream to close yet
    form.prompt.value = "Hello"
    seen = len(emulator.requests)
    first = form.submit()
    assert first is not None and emulator.wait_for_requests(seen + 1)
    form.stop()
    # At once, not when the answer comes: the form is free and says what happened.
    assert not form.running and form.submit_button.disabled is False
    assert form.status_text.startswith("Stopped") and "no text had arrived" in form.status_text
    assert form.history[-1]["status"] == "cancelled" and form.wait(0)
    emulator.latency = 0
    second = form.submit()
    assert second is not None and form.wait(WAIT)
    assert form.result is not None and form.status_text.startswith("text-davinci-003 · ")
    # The first request, answered later, is closed unread by its own thread: recorded cancelled,
    # and the form (now showing the second result) is left alone.
    first.join(WAIT)
    assert not first.is_alive()
    assert sorted(r.status for r in _completion_calls(records)) == ["cancelled", "ok"]
    assert form.status_text.startswith("text-davinci-003 · ") and form.history[-1]["status"] == "ok"


def test_api_error_shows_one_sentence_and_the_form_stays_usable(form: PromptForm, emulator: Any,
                                                                 records: list[CallRecord]) -> None:
    emulator.queue_fault("status", status=401)
    form.prompt.value = "Hello"
    form.submit()
    assert form.wait(WAIT)
    assert form.status_text.startswith("Error: 401 unauthorized: ")
    assert "check pienteger_api_key" in form.status_text.lower()
    assert "(request " in form.status_text
    assert "\n" not in form.status_text and "Traceback" not in form.status_text
    assert "pienteger-error" in form.status.value
    assert form.result is None and form.history[-1]["status"] == "error"
    assert _completion_calls(records)[-1].status == "error"
    form.submit()  # usable again
    assert form.wait(WAIT)
    assert form.result is not None and form.status_text.startswith("text-davinci-003 · ")


def test_stream_broken_mid_way_keeps_text_and_says_so(form: PromptForm, emulator: Any) -> None:
    emulator.queue_fault("cut", after=4)
    form.prompt.value = "Once upon a time"
    form.max_tokens.value = 100
    form.submit()
    assert form.wait(WAIT)
    assert form.status_text.startswith("Error: the stream broke")
    assert _text(form) != ""  # what arrived before the cut stays


def test_bad_input_is_refused_before_sending(form: PromptForm, emulator: Any) -> None:
    sent = len(emulator.requests)
    form.prompt.value = "   "
    assert form.submit() is None
    assert form.status_text == "Error: the prompt is empty; type one first."
    form.prompt.value = "Hi"
    form.stop_field.value = "a, b, c, d, e"
    assert form.submit() is None
    assert form.status_text.startswith("Error: ") and "stop" in form.status_text
    assert len(emulator.requests) == sent
    assert form.submit_button.disabled is False


def test_submit_while_running_returns_none(form: PromptForm, emulator: Any) -> None:
    emulator.queue_fault("stall", after=1)
    form.prompt.value = "Hello"
    assert form.submit() is not None
    assert form.submit() is None
    form.stop()
    assert form.wait(WAIT)


def test_dropdown_falls_back_to_a_text_field_when_listing_fails(emulator: Any, forms: list[PromptForm]) -> None:
    wrong = Client(api_key="pk-wrong-key-000000000000", base_url=emulator.url)
    form = PromptForm(wrong, model="text-ada-001")
    forms.append(form)
    assert form.model_text in form._model_row.children and form.model not in form._model_row.children
    assert form.model_name == "text-ada-001"
    assert form.status_text.startswith("Could not list the models: 401 unauthorized")
    assert form.status_text.endswith("Type a model name instead.")


def test_unreachable_service_and_a_later_fix(monkeypatch: pytest.MonkeyPatch, emulator: Any,
                                             forms: list[PromptForm]) -> None:
    monkeypatch.setenv("PIENTEGER_BASE_URL", emulator.url)
    form = PromptForm()  # no key anywhere yet
    forms.append(form)
    assert form.model_text in form._model_row.children
    assert "no Pienteger API key" in form.status_text
    form.prompt.value = "Hello"
    assert form.submit() is None  # refused at once: no thread, no "Streaming..." flash
    assert form.status_text.startswith("Error: no Pienteger API key")
    assert form.submit_button.disabled is False and form.history == []
    monkeypatch.setenv("PIENTEGER_API_KEY", TEST_KEY)  # settings are read again: the form recovers
    form.refresh_button.click()
    assert form.model in form._model_row.children
    assert form.status_text.startswith("Ready: ")


def test_settings_a_client_refuses_leave_a_usable_form(monkeypatch: pytest.MonkeyPatch,
                                                       forms: list[PromptForm]) -> None:
    fragment = "not an http(s) URL"
    monkeypatch.setenv("PIENTEGER_API_KEY", TEST_KEY)
    monkeypatch.setenv("PIENTEGER_BASE_URL", "notaurl")
    form = PromptForm()
    forms.append(form)
    assert form.model_text in form._model_row.children
    assert form.status_text.startswith("Could not list the models: ") and fragment in form.status_text
    form.prompt.value = "Hello"
    assert form.submit() is None
    assert form.status_text.startswith("Error: ") and fragment in form.status_text
    assert form.submit_button.disabled is False


def test_a_slow_model_listing_does_not_hold_the_form_up(emulator: Any, forms: list[PromptForm],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from pienteger_nb.notebook import form as widgets

    monkeypatch.setattr(widgets, "LIST_TIMEOUT", 0.2)  # the cell that makes the form waits this long at most
    emulator.latency = 5.0  # /models answers later than that
    form = PromptForm(Client(api_key=TEST_KEY, base_url=emulator.url, timeout=60))
    forms.append(form)
    assert form.model_text in form._model_row.children
    assert "no answer in time" in form.status_text and form.status_text.endswith("Type a model name instead.")


def test_closed_port_falls_back(forms: list[PromptForm]) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    form = PromptForm(Client(api_key=TEST_KEY, base_url=f"http://127.0.0.1:{port}/oaiv1", max_retries=0))
    forms.append(form)
    assert form.model_text in form._model_row.children
    assert "check PIENTEGER_BASE_URL" in form.status_text


def _form_widgets(form: PromptForm) -> list[W.Widget]:
    """Every widget the form made: its attributes, and everything inside its boxes."""
    found: dict[str, W.Widget] = {}
    todo: list[Any] = [v for v in vars(form).values() if isinstance(v, W.Widget)]
    todo += [w for v in vars(form).values() if isinstance(v, list) for w in v if isinstance(w, W.Widget)]
    while todo:
        w = todo.pop()
        if w.model_id not in found:
            found[w.model_id] = w
            todo.extend(getattr(w, "children", ()))
    return list(found.values())


def _widget_states(form: PromptForm) -> str:
    manager = W.Widget.get_manager_state()  # what a saved notebook would hold, every live widget
    own = [w.get_state() for w in _form_widgets(form)]
    return json.dumps(manager, default=str) + json.dumps(own, default=str)


def test_the_key_never_sits_in_any_widget_state(form: PromptForm, emulator: Any) -> None:
    seen: list[str] = []
    widgets = _form_widgets(form)
    assert len(widgets) >= 18
    for w in widgets:  # watch every trait change, not just the end states
        w.observe(lambda change: seen.append(json.dumps(change["new"], default=str)))
    form.prompt.value = "Hello"
    form.submit()
    assert form.wait(WAIT)
    emulator.queue_fault("status", status=401)
    form.submit()
    assert form.wait(WAIT)
    emulator.queue_fault("stall", after=2)
    painted = _first_paint(form)
    form.submit()
    assert painted.wait(WAIT)
    form.stop()
    assert form.wait(WAIT)
    form.refresh_models()
    everything = _widget_states(form) + "".join(seen) + repr(form) + json.dumps(form.history, default=str)
    assert TEST_KEY not in everything
    assert TEST_KEY[-12:] not in everything
    assert len(seen) > 5  # the watch really saw the traffic


def test_the_form_displays_as_its_widget(form: PromptForm) -> None:
    bundle = form._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    view = data["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == form.widget.model_id
    assert "pienteger-form" in form.widget._dom_classes
    assert "PromptForm" in repr(form)


def test_history_is_short(form: PromptForm, emulator: Any) -> None:
    from pienteger_nb.notebook import form as widgets

    form.prompt.value = "Hi"
    form.max_tokens.value = 2
    for _ in range(widgets.HISTORY_LENGTH + 2):
        form.submit()
        assert form.wait(WAIT)
    assert len(form.history) == widgets.HISTORY_LENGTH


def test_pienteger_form_magic_displays_a_form(env_emulator: Any) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ip = InteractiveShell.instance()  # the process's one shell, shared with the magics tests
    ip.run_line_magic("load_ext", "pienteger_nb")
    with capture_output() as cap:
        res = ip.run_cell("%pienteger form", silent=True)
    assert res.success, res.error_in_exec
    (shown,) = [o for o in cap.outputs if "application/vnd.jupyter.widget-view+json" in o.data]
    model_id = shown.data["application/vnd.jupyter.widget-view+json"]["model_id"]
    box = W.Widget.get_manager_state()["state"][model_id]
    assert box["model_name"] == "VBoxModel"
    assert "pienteger-form" in box["state"]["_dom_classes"]
    assert TEST_KEY not in json.dumps(W.Widget.get_manager_state(), default=str)


def test_ipython_formatter_shows_the_widget(form: PromptForm) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    data, _ = InteractiveShell.instance().display_formatter.format(form)
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == form.widget.model_id
    assert "text/plain" in data


def test_stop_cannot_cut_a_call_that_is_not_streamed_short(emulator: Any, records: list[CallRecord],
                                                           forms: list[PromptForm]) -> None:
    sending = threading.Event()

    class Pacer:  # the client calls acquire() just before it sends: the request is then on its way
        def acquire(self) -> None:
            sending.set()

        def observe(self, status_code: Any, retry_after: Any, ratelimit: Any) -> None:
            pass

    client = Client(api_key=TEST_KEY, base_url=emulator.url, on_call=records.append, pacer=Pacer())
    form = PromptForm(client)
    forms.append(form)
    sending.clear()  # listing the models went through the pacer too
    emulator.queue_fault("stall", seconds=0.3)  # a plain call: the answer comes 0.3 s late
    form.stream.value = False
    form.prompt.value = "Hello"
    form.max_tokens.value = 8
    form.submit()
    assert sending.wait(WAIT)
    form.stop()
    assert form.status_text == "Stopping..."
    assert form.wait(WAIT)
    assert form.result is not None and _text(form) == form.result.text
    assert form.status_text.endswith("(Stop cannot cut short a request that is not streamed)")
    assert _completion_calls(records)[-1].status == "ok"


@pytest.mark.notebook
def test_a_saved_notebook_holds_no_trace_of_the_key(env_emulator: Any, tmp_path: Any) -> None:
    """nbclient saves every synced widget value (as JupyterLab's saveState does): none is the key."""
    import nbformat
    from nbclient import NotebookClient

    env_emulator.queue_fault("status", status=401)  # the first call fails, the second works
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in [
        "from pienteger_nb import PromptForm\nform = PromptForm()\nform",
        "form.prompt.value = 'Hello'\nform.submit()\nassert form.wait(30)\nprint(form.status_text)",
        "form.submit()\nassert form.wait(30)\nprint(form.status_text)",
    ]]
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    path = tmp_path / "form.ipynb"
    nbformat.write(nb, path)
    text = path.read_text()
    saved = nbformat.read(path, as_version=4)
    printed = ["".join(o.get("text", "") for o in c.outputs) for c in saved.cells[1:]]
    assert printed[0].startswith("Error: 401 unauthorized")
    assert printed[1].startswith("text-davinci-003 · ")
    states = saved.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert any("pienteger-status" in str(s["state"].get("value", "")) for s in states.values())
    assert TEST_KEY not in text and TEST_KEY[-12:] not in text
