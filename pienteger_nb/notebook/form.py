"""PromptForm: a widget form for completions that streams into its own output area.

The generation runs in a background thread, so the kernel stays free while tokens arrive and
a Stop click is handled at once (a click is not processed while a cell blocks). The API key
lives only inside the client object: no widget ever holds it, so neither nbclient nor
JupyterLab's widget ``saveState`` can write it into a notebook.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import config
from ..client.results import estimate_tokens
from ..errors import PientegerError
from ..ledger.prices import completion_cost, cost_usd, format_usd
from ..types import Completion
from .form_text import error_sentence, parse_stop, status_summary, unescape
from .form_view import UPDATE_INTERVAL, FormView, _Painter, _start_timer
from .render import shown_model

HISTORY_LENGTH = 20
# Seconds the model listing may take: the cell that makes the form waits for it (the client's
# own read timeout, 60 s by default, is meant for completions).
LIST_TIMEOUT = 10.0


@dataclass(frozen=True)
class _Job:
    client: Any
    prompt: str
    model: str
    stream: bool
    params: dict[str, Any]
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)


class PromptForm(FormView):
    """A form for one prompt at a time: pick a model, set the options, Submit, watch it stream.

    ``form.submit()`` / ``form.stop()`` do what the buttons do; ``form.wait()`` joins the
    running generation; ``form.result`` is the last call's ``Completion`` (None after an
    error or a stop that left none) and ``form.history`` a short list of this form's calls.

    ``client`` defaults to a ``Client()`` from the current settings (made again when they
    change); its calls are recorded with source "form". ``model`` preselects a model.
    ``clock``, ``timer`` and ``update_interval`` set how output updates are throttled (tests
    pass fakes).
    """

    def __init__(
        self,
        client: Any = None,
        model: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[float, Callable[[], None]], Any] = _start_timer,
        update_interval: float = UPDATE_INTERVAL,
    ):
        self._own_client = client is None
        self._settings: Any = None
        self._client: Any = None
        self._client_error: Exception | None = None
        self._given_client = client
        self._clock = clock
        self._timer = timer
        self._interval = update_interval
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self._job: _Job | None = None  # the generation the form's widgets belong to
        self._active = False
        self._painter: _Painter | None = None
        self.result: Completion | None = None
        self.history: list[dict[str, Any]] = []
        super().__init__(model)
        self.submit_button.on_click(lambda _b: self.submit())
        self.stop_button.on_click(lambda _b: self.stop())
        self.refresh_button.on_click(lambda _b: self.refresh_models())
        self.refresh_models()

    def __repr__(self) -> str:
        state = "running" if self.running else "idle"
        return f"<PromptForm model={self.model_name!r} {state}; display it in a notebook to use it>"

    # -- client and models ----------------------------------------------------------------

    def _ensure_client(self) -> Any:
        """The form's client (source "form"); an own client is rebuilt when settings changed."""
        if not self._own_client:
            if self._client is None:
                self._client = self._given_client.with_options(source="form")
            return self._client
        settings: tuple[Any, ...]
        try:
            settings = config.client_settings()
        except PientegerError as exc:
            settings = ("invalid", str(exc))
        if self._client is None or settings != self._settings:
            from ..client.client import Client

            self._settings = settings
            try:
                self._client = Client(source="form")
                self._client_error = None
            except (PientegerError, ValueError) as exc:
                self._client, self._client_error = None, exc
        return self._client

    def refresh_models(self) -> None:
        """Fill the model dropdown from the API; on failure show a text field and say why."""
        client = self._ensure_client()
        current = self.model_name or self._default_model
        try:
            if client is None:
                raise self._client_error or PientegerError("no client")
            # A form should not hang on a listing: no retries, and a short wait.
            wait = min(getattr(client, "timeout", LIST_TIMEOUT), LIST_TIMEOUT)
            lister = client.with_options(max_retries=0, timeout=wait)
            ids = [m.id for m in lister.models()]
            if not ids:
                raise PientegerError("the service listed no models")
        except Exception as exc:  # noqa: BLE001  any failure: the form stays usable with a typed model
            self._use_model_text(current)
            reason = error_sentence(exc, secrets=self._secrets()).removeprefix("Error: ").rstrip(".")
            self._set_status(f"Could not list the models: {reason}. Type a model name instead.",
                             kind="warn")
            return
        self._use_model_list(ids, current)
        self._set_status(f"Ready: {len(ids)} models.", kind="info")

    @property
    def running(self) -> bool:
        """True from Submit until the generation's final state is on screen."""
        return self._active

    def _secrets(self) -> list[str]:
        """Key values that must never reach a widget (a last guard; errors never carry it)."""
        found = []
        key, _ = config.api_key()
        if key:
            found.append(key.get())
        # No client when the settings were refused (a bad base URL): then only the settings' key.
        for value in (vars(self._client) if self._client is not None else {}).values():
            if isinstance(value, config.Secret) and value:
                found.append(value.get())
        return found

    # -- actions --------------------------------------------------------------------------

    def _read_job(self) -> _Job:
        client = self._ensure_client()
        if client is None:
            raise self._client_error or PientegerError("no client")
        model = self.model_name
        if not model:
            raise ValueError("choose or type a model first")
        prompt = self.prompt.value
        suffix = unescape(self.suffix.value)
        if not prompt.strip() and not suffix:
            raise ValueError("the prompt is empty; type one first")
        params: dict[str, Any] = {
            "temperature": float(self.temperature.value),
            "top_p": float(self.top_p.value),
            "max_tokens": int(self.max_tokens.value),
        }
        if suffix:
            params["suffix"] = suffix
        stop = parse_stop(self.stop_field.value)
        if stop:
            params["stop"] = stop if len(stop) > 1 else stop[0]
        stream = bool(self.stream.value)
        # Checked exactly as the call will be (ranges, key, URL), so bad input never starts a thread.
        client.request_preview(prompt, model=model, stream=stream, **params)
        client.require_key()  # the preview shows a request without one; the call would fail
        return _Job(client=client, prompt=prompt, model=model, stream=stream, params=params)

    def submit(self) -> threading.Thread | None:
        """Start a generation in a background thread and return it (None when one is running
        or the form's input is not usable; the status line then says why)."""
        with self._lock:
            if self.running:
                return None
            try:
                job = self._read_job()
            except Exception as exc:  # noqa: BLE001  bad input: one line in the status, no traceback
                self._set_status(error_sentence(exc, secrets=self._secrets()), kind="error")
                return None
            self._job = job
            self._stream = None
            self._active = True
            self._set_running(True)
            self.output.outputs = ()
            self._painter = _Painter(self._show, final=self._show_final, interval=self._interval,
                                     clock=self._clock, timer=self._timer)
            verb = "Streaming" if job.stream else "Waiting for"
            self._set_status(f"{verb} {job.model}...", kind="info")
            thread = threading.Thread(target=self._run, args=(job, self._painter), daemon=True,
                                      name="pienteger-form")
            self._thread = thread
            thread.start()
        return thread

    def stop(self) -> None:
        """Stop the running generation; the text so far stays and the call is recorded as cancelled.

        Before the service has answered there is no stream to close yet: the form lets go of that
        request at once (its thread closes it when the answer comes, recorded as cancelled).
        """
        with self._lock:  # the worker's final status takes this lock too, so it always comes last
            job, stream = self._job, self._stream
            if job is None:
                return
            job.stop.set()
            if stream is None and job.stream:
                self._let_go(job)
            elif self._active:
                self.stop_button.disabled = True
                self._set_status("Stopping...", kind="info")
        if stream is not None:
            stream.close()  # thread-safe: the reading thread's iteration ends quietly

    def _let_go(self, job: _Job) -> None:
        # Call with self._lock held: the form is free again; the job's thread no longer owns it.
        if self._painter is not None:
            self._painter.finish("")
        self._report(job, "", None, None, True, time.perf_counter() - job.started)
        self._job = None
        self._active = False
        self._set_running(False)

    def wait(self, timeout: float | None = None) -> bool:
        """Join the running generation; True when none is running any more (a request Stop let
        go of before it was answered is not waited for)."""
        thread = self._thread
        if thread is not None and self._job is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self) -> None:
        """Stop any generation and close every widget of the form."""
        self.stop()
        self.wait(5)
        super().close()

    # -- the generation thread ------------------------------------------------------------

    def _run(self, job: _Job, painter: _Painter) -> None:
        received: list[str] = []  # the text so far survives an error mid-stream
        text, completion, error = "", None, None
        try:
            if job.stream:
                completion = self._run_stream(job, painter, received)
                text = "".join(received)
            elif not job.stop.is_set():
                completion = job.client.complete(job.prompt, model=job.model, **job.params)
                text = completion.text
        except Exception as exc:  # noqa: BLE001  shown as one line; the form stays usable
            error = exc
            text = "".join(received) or getattr(exc, "partial_text", "") or ""
        seconds = time.perf_counter() - job.started
        with self._lock:
            if self._job is not job:  # Stop let go of this request before it was answered
                return
            try:
                painter.finish(text)
                self.result = completion
                self._report(job, text, completion, error, job.stop.is_set(), seconds)
            finally:
                self._job = None
                self._stream = None
                self._active = False
                self._set_running(False)

    def _run_stream(self, job: _Job, painter: _Painter, received: list[str]) -> Completion | None:
        if job.stop.is_set():
            return None
        stream = job.client.stream(job.prompt, model=job.model, **job.params)
        with stream:
            with self._lock:
                if self._job is job:
                    self._stream = stream
            if job.stop.is_set():  # Stop came while the request was being made
                stream.close()
            text = ""
            for delta in stream:
                received.append(delta)
                text += delta
                painter.offer(text)
        return stream.completion

    def _report(self, job: _Job, text: str, completion: Completion | None, error: Exception | None,
                stopped: bool, seconds: float) -> None:
        if stopped and completion is None:
            status = "cancelled"
        elif error is not None:
            status = "error"
        else:
            status = "ok"
        prompt_tokens = completion.usage.prompt_tokens if completion else estimate_tokens(job.prompt)
        completion_tokens = completion.usage.completion_tokens if completion else estimate_tokens(text)
        # The cost its ledger row gets: a replay's is 0 and says "cached"; a stopped stream paid
        # for the tokens it received (estimated), as its cancelled row records.
        cached = bool(completion is not None and completion.cached)
        if completion is not None:
            cost = completion_cost(completion)
        else:
            cost = cost_usd(job.model, prompt_tokens, completion_tokens)
        entry: dict[str, Any] = {
            "prompt": job.prompt if len(job.prompt) <= 200 else job.prompt[:199] + "…",
            "model": shown_model(job.model, completion.model if completion else None),
            "status": status,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "seconds": round(completion.latency_s if completion and completion.latency_s else seconds, 3),
            "finish_reason": completion.finish_reason if completion else None,
            "request_id": completion.request_id if completion else getattr(error, "request_id", None),
            "error": error_sentence(error, secrets=self._secrets()) if error is not None else "",
            "cost": cost,
            "cached": cached,
        }
        self.history.append(entry)
        del self.history[:-HISTORY_LENGTH]
        if status == "error":
            self._set_status(str(entry["error"]), kind="error")
        else:
            note = ""
            if stopped and status == "ok" and not job.stream:
                note = " (Stop cannot cut short a request that is not streamed)"
            elif stopped and completion is not None:
                note = " (finished before Stop took effect)"
            line = status_summary(
                model=str(entry["model"]), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                seconds=float(entry["seconds"]), finish_reason=entry["finish_reason"],
                usage_source=completion.usage.source if completion else "estimated",
                stopped=status == "cancelled", cost="cached" if cached else format_usd(cost),
            )
            self._set_status(line + note, kind="warn" if status == "cancelled" else "ok")
        self._render_history(self.history)


__all__ = ["PromptForm"]
