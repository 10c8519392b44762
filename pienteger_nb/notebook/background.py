"""Background completions: ``%%pienteger --background`` and ``%pienteger jobs`` / ``stop``.

The cell returns at once; a worker thread streams the text into an Output widget under it,
with the PromptForm's throttled painter, and a Stop button sets the job's event and closes its
stream. The kernel stays free for other cells, and a kernel interrupt (which reaches only
the main thread) leaves the jobs running: Stop, or ``%pienteger stop``, ends them.
"""

from __future__ import annotations

import html
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..types import Completion
from .failures import describe
from .render import render_output, usage_line

# Jobs kept for %pienteger jobs after they end; running ones are never dropped.
MAX_FINISHED = 50


@dataclass
class BackgroundJob:
    """One background completion: what it asked for, where it stands, and its widgets."""

    id: int
    model: str
    prompt: str
    params: dict[str, Any]
    fmt: str
    output_name: str | None = None
    state: str = "running"  # running, done, stopped, error
    tokens: int = 0  # completion tokens: streamed pieces while running, the usage count at the end
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    completion: Completion | None = None
    error: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    stream: Any = None
    widget: Any = None
    output: Any = None
    status: Any = None
    stop_button: Any = None
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for_tokens(self, count: int, timeout: float | None = None) -> bool:
        """Block until ``count`` pieces of text have arrived or the job ended; True when they arrived."""
        with self.changed:
            self.changed.wait_for(lambda: self.tokens >= count or self.state != "running", timeout)
            return self.tokens >= count

    @property
    def seconds(self) -> float:
        return (self.ended if self.ended is not None else time.perf_counter()) - self.started

    def wait(self, timeout: float | None = None) -> bool:
        """Join the worker; True when it has ended."""
        if self.thread is not None:
            self.thread.join(timeout)
            return not self.thread.is_alive()
        return True


class JobBoard:
    """This kernel's background jobs, numbered from 1."""

    def __init__(self, *, timer: Callable[[float, Callable[[], None]], Any] | None = None):
        self.jobs: dict[int, BackgroundJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._timer = timer

    def start(
        self,
        client: Any,
        prompt: str,
        *,
        model: str,
        params: dict[str, Any],
        fmt: str,
        on_done: Callable[[BackgroundJob], None] | None = None,
        output_name: str | None = None,
    ) -> BackgroundJob:
        """Show the job's widgets and start its thread; returns at once."""
        import ipywidgets as W
        from IPython.display import display

        from .form_view import UPDATE_INTERVAL, _Painter, _start_timer

        with self._lock:
            job = BackgroundJob(next(self._ids), model, prompt, params, fmt, output_name)
            self.jobs[job.id] = job
            finished = [j for j in self.jobs.values() if j.state != "running"]
            for old in finished[: max(0, len(finished) - MAX_FINISHED)]:
                del self.jobs[old.id]
        job.output = W.Output(layout=W.Layout(max_height="32em", overflow="auto"))
        job.status = W.HTML(value=self._status_html(job, f"job {job.id} · {model} · starting..."))
        job.stop_button = W.Button(description="Stop", icon="stop", button_style="danger",
                                   tooltip="Stop this background completion; the text so far is kept",
                                   layout=W.Layout(width="90px"))
        job.stop_button.on_click(lambda _b: self.stop_job(job))
        job.widget = W.VBox([W.HBox([job.stop_button, job.status], layout=W.Layout(align_items="center")),
                             job.output])
        job.widget.add_class("pienteger-background")
        display(job.widget)
        painter = _Painter(lambda text: _show(job, {"text/markdown": text}), interval=UPDATE_INTERVAL,
                           timer=self._timer or _start_timer)
        job.thread = threading.Thread(target=self._run, args=(job, client, painter, on_done), daemon=True,
                                      name=f"pienteger-background-{job.id}")
        job.thread.start()
        return job

    # -- stopping -------------------------------------------------------------------------

    def stop_job(self, job: BackgroundJob) -> bool:
        """Stop one job; False when it had already ended."""
        if job.state != "running":
            return False
        job.stop_event.set()
        stream = job.stream
        if stream is not None:
            stream.close()  # thread-safe: the worker's iteration ends quietly
        return True

    def stop(self, which: str | None) -> list[int]:
        """Stop job ``which`` (an id) or every running job (``all`` or None); the ids stopped."""
        if which in (None, "all"):
            targets = list(self.jobs.values())
        else:
            try:
                targets = [self.jobs[int(str(which).lstrip("#"))]]
            except (ValueError, KeyError):
                known = ", ".join(str(i) for i in self.jobs) or "none"
                raise LookupError(f"no background job {which!r}; jobs: {known} (%pienteger jobs lists them)") from None
        return [job.id for job in targets if self.stop_job(job)]

    def close(self, timeout: float = 5.0) -> None:
        """Stop every job and join their threads (the extension is being unloaded)."""
        self.stop(None)
        deadline = time.monotonic() + timeout
        for job in list(self.jobs.values()):
            job.wait(max(0.0, deadline - time.monotonic()))

    def rows(self) -> list[tuple[Any, ...]]:
        return [(j.id, j.model, j.state, j.tokens, f"{j.seconds:.1f}") for j in self.jobs.values()]

    # -- the worker -----------------------------------------------------------------------

    def _run(self, job: BackgroundJob, client: Any, painter: Any, on_done: Callable[..., None] | None) -> None:
        text = ""
        error: BaseException | None = None
        try:
            self._set_status(job, f"job {job.id} · {job.model} · streaming...")
            with client.stream(job.prompt, model=job.model, **job.params) as stream:
                job.stream = stream
                if job.stop_event.is_set():  # Stop came while the request was being made
                    stream.close()
                for delta in stream:
                    text += delta
                    with job.changed:
                        job.tokens += 1
                        job.changed.notify_all()
                    painter.offer(text)
            job.completion = stream.completion
        except Exception as exc:  # noqa: BLE001  shown as one line in the job's own output
            error = exc
            text = text or getattr(exc, "partial_text", "") or ""
        finally:
            job.stream = None
            job.ended = time.perf_counter()
        painter.finish(text)
        with job.changed:
            self._finish(job, text, error)
            job.changed.notify_all()
        if on_done is not None and job.completion is not None:
            on_done(job)

    def _finish(self, job: BackgroundJob, text: str, error: BaseException | None) -> None:
        if error is not None:
            job.state, job.error = "error", describe(error)
            _show(job, {"text/markdown": text} if text else None,
                  stderr=job.error + ("; the text so far is kept above" if text else ""))
            self._set_status(job, f"job {job.id} · {job.model} · error", kind="error")
        elif job.completion is None:
            job.state = "stopped"
            kept = "partial text kept" if text else "no text had arrived"
            self._set_status(job, f"job {job.id} · {job.model} · stopped after {job.seconds:.1f} s · {kept}",
                             kind="warn")
        else:
            job.state = "done"
            job.tokens = job.completion.usage.completion_tokens
            data, metadata = render_output(job.completion, job.fmt)
            _show(job, data, metadata=metadata)
            self._set_status(job, f"job {job.id} · {usage_line(job.completion)}")
        if job.stop_button is not None:
            job.stop_button.disabled = True

    def _set_status(self, job: BackgroundJob, text: str, *, kind: str = "info") -> None:
        if job.status is not None:
            job.status.value = self._status_html(job, text, kind=kind)

    @staticmethod
    def _status_html(job: BackgroundJob, text: str, *, kind: str = "info") -> str:
        colour = {"error": "var(--jp-error-color1, #d32f2f)", "warn": "var(--jp-warn-color1, #e65100)"}.get(
            kind, "var(--jp-ui-font-color2, #666)")
        return (f"<span class='pienteger-job-status' data-state='{html.escape(job.state)}' "
                f"style='color:{colour}; margin-left:8px'>{html.escape(text)}</span>")


def _show(job: BackgroundJob, data: dict[str, Any] | None, *, metadata: dict[str, Any] | None = None,
          stderr: str = "") -> None:
    """Replace the job's output (one output, updated in place; appending would add one per token)."""
    outputs: list[dict[str, Any]] = []
    if data:
        outputs.append({"output_type": "display_data", "data": data, "metadata": metadata or {}})
    if stderr:
        outputs.append({"output_type": "stream", "name": "stderr", "text": stderr + "\n"})
    job.output.outputs = tuple(outputs)


__all__ = ["MAX_FINISHED", "BackgroundJob", "JobBoard"]
