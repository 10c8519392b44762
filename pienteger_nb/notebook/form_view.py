"""The PromptForm's controls and how they look; its throttled output painter.

Everything here only shows things: the behaviour (client, thread, Stop) is in ``widgets.py``.
Widget traits may be set from the generation thread: ipykernel 7 syncs them from any thread.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import ipywidgets as W

from .. import config
from ..ledger.prices import format_usd
from ..throttle import Throttle

# The service's own default (16 tokens) cuts most answers short; a form starts more useful.
FORM_MAX_TOKENS = 256
# 16 output updates a second at most: with the ~7 fixed messages of a call (buttons, status,
# history) a 2-second stream stays under 20 comm messages a second in all.
UPDATE_INTERVAL = 1 / 16

_LABEL_STYLE = {"description_width": "90px"}


def _start_timer(delay: float, fn: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()
    return timer


class _Painter:
    """Shows streaming text at most once per ``interval``: the first offer at once, later ones
    after the interval, and a trailing paint so the newest text lands even when tokens pause.
    ``finish`` paints the final text (with ``final`` when given); nothing paints after it."""

    def __init__(
        self,
        show: Callable[[str], None],
        *,
        final: Callable[[str], None] | None = None,
        interval: float = UPDATE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[float, Callable[[], None]], Any] = _start_timer,
    ):
        self._show = show
        self._final = final
        self._throttle = Throttle(interval, clock=clock)
        self._timer = timer
        self._lock = threading.Lock()
        self._pending: str | None = None
        self._shown: str | None = None
        self._scheduled: Any = None
        self._done = False
        self.paints = 0

    def offer(self, text: str) -> None:
        with self._lock:
            if self._done:
                return
            self._pending = text
            if self._throttle.ready():
                self._paint()
            elif self._scheduled is None:
                self._scheduled = self._timer(self._throttle.interval, self._trailing) or True

    def _trailing(self) -> None:
        with self._lock:
            self._scheduled = None
            if self._done or self._pending is None:
                return
            if self._throttle.ready():
                self._paint()
            else:  # woke a little early: try again shortly
                self._scheduled = self._timer(self._throttle.interval / 4, self._trailing) or True

    def _paint(self) -> None:
        text, self._pending = self._pending, None
        if text is not None and text != self._shown:
            self._show(text)
            self._shown = text
            self.paints += 1

    def finish(self, text: str) -> None:
        with self._lock:
            self._done = True
            if hasattr(self._scheduled, "cancel"):
                self._scheduled.cancel()
            self._scheduled = None
            if self._final is None:
                self._pending = text
                self._paint()
            elif text or self._shown:
                self._final(text)
                self._shown = text
                self.paints += 1


class FormView:
    """The form's widgets, laid out; ``widget`` is the box that gets displayed."""

    def __init__(self, model: str | None = None):
        temperature = config.get("temperature")
        max_tokens = config.get("max_tokens")
        self._default_model = model or config.get("model")
        # Widgets carry a 2px margin on each side: 100% would overflow the box by 4px.
        full = W.Layout(width="calc(100% - 4px)")
        self.model = W.Dropdown(
            options=[self._default_model], value=self._default_model, description="Model",
            style=_LABEL_STYLE, layout=W.Layout(width="380px"), tooltip="The model to complete with",
        )
        self.model_text = W.Text(
            value=self._default_model, description="Model", style=_LABEL_STYLE,
            layout=W.Layout(width="380px"), placeholder="model id, e.g. text-davinci-003",
        )
        self.refresh_button = W.Button(
            description="", icon="refresh", tooltip="List the models again",
            layout=W.Layout(width="36px"),
        )
        self.stream = W.Checkbox(
            value=bool(config.get("stream")), description="Stream tokens as they arrive", indent=False,
            layout=W.Layout(width="auto", margin="0 0 0 24px"),
        )
        self.prompt = W.Textarea(
            value="", description="Prompt", placeholder="Type a prompt, then Submit (Tab to reach it)",
            rows=5, style=_LABEL_STYLE, layout=full,
        )
        self.suffix = W.Text(
            value="", description="Suffix", placeholder=r"text after the completion (\n for a newline)",
            style=_LABEL_STYLE, layout=W.Layout(width="calc(100% - 4px)"),
        )
        self.temperature = W.FloatSlider(
            value=1.0 if temperature is None else float(temperature), min=0.0, max=2.0, step=0.05,
            description="Temperature", readout_format=".2f", style=_LABEL_STYLE,
            layout=W.Layout(width="340px"), tooltip="0 = most likely tokens; higher = more varied",
        )
        self.top_p = W.FloatSlider(
            value=1.0, min=0.0, max=1.0, step=0.01, description="Top p", readout_format=".2f",
            style=_LABEL_STYLE, layout=W.Layout(width="340px"), tooltip="nucleus sampling mass",
        )
        self.max_tokens = W.BoundedIntText(
            value=FORM_MAX_TOKENS if max_tokens is None else int(max_tokens), min=1, max=4096,
            description="Max tokens", style=_LABEL_STYLE, layout=W.Layout(width="200px"),
        )
        self.stop_field = W.Text(
            value="", description="Stop", placeholder=r"up to 4, comma separated; \n = newline",
            style=_LABEL_STYLE, layout=W.Layout(width="460px"),
        )
        self.submit_button = W.Button(
            description="Submit", icon="play", button_style="primary", tooltip="Send the prompt",
            layout=W.Layout(width="110px"),
        )
        self.stop_button = W.Button(
            description="Stop", icon="stop", button_style="danger", disabled=True,
            tooltip="Stop the generation; the text so far is kept", layout=W.Layout(width="110px"),
        )
        self.status = W.HTML(value="", layout=W.Layout(margin="0 0 0 12px", flex="1 1 0%", width="auto"))
        self.output = W.Output(layout=W.Layout(
            border="1px solid var(--jp-border-color1, #ccc)", padding="4px 8px",
            min_height="3em", max_height="32em", overflow="auto", width="calc(100% - 4px)",
        ))
        self.history_view = W.HTML(value="<i>No calls yet.</i>")
        self._history_box = W.Accordion(children=[self.history_view], titles=("History",),
                                        layout=W.Layout(width="calc(100% - 4px)"))
        self._history_box.selected_index = None

        self._model_row = W.HBox([self.model, self.refresh_button, self.stream],
                                 layout=W.Layout(align_items="center"))
        self._rows = [
            W.HBox([self.temperature, self.top_p]),
            W.HBox([self.max_tokens, self.stop_field]),
            W.HBox([self.submit_button, self.stop_button, self.status],
                   layout=W.Layout(align_items="center", margin="6px 0")),
        ]
        self.status_text = ""
        self.widget = W.VBox(
            [self._model_row, self.prompt, self.suffix, *self._rows, self.output, self._history_box],
            layout=W.Layout(width="100%", max_width="960px"),
        )
        self.widget.add_class("pienteger-form")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def model_name(self) -> str:
        """The model the next Submit will use."""
        if self.model_text in self._model_row.children:
            return self.model_text.value.strip()
        return str(self.model.value or "")

    def _use_model_list(self, ids: list[str], current: str) -> None:
        options = list(ids)
        if current not in options:
            options.insert(0, current)
        self.model.options = options
        self.model.value = current
        self._model_row.children = (self.model, self.refresh_button, self.stream)

    def _use_model_text(self, current: str) -> None:
        self.model_text.value = current
        self._model_row.children = (self.model_text, self.refresh_button, self.stream)

    def _secrets(self) -> list[str]:
        return []

    def close(self) -> None:
        """Close every widget of the form (their comms go away)."""
        for child in (self.model, self.model_text, self.refresh_button, self.stream, self.prompt,
                      self.suffix, self.temperature, self.top_p, self.max_tokens, self.stop_field,
                      self.submit_button, self.stop_button, self.status, self.output,
                      self.history_view, self._history_box, self._model_row, *self._rows, self.widget):
            child.close()

    # -- widget updates (from any thread: ipykernel 7 syncs traits set off the main thread) --

    def _show(self, text: str, *, final: bool = False) -> None:
        # One output, replaced in place (appending would add one output per token). Markdown is
        # what the front end shows (words wrap like prose); the final state adds text/plain, the
        # exact text, without sending every update's text twice.
        bundle = {"text/markdown": text, "text/plain": text} if final else {"text/markdown": text}
        self.output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},) if text else ()

    def _show_final(self, text: str) -> None:
        self._show(text, final=True)

    def _set_running(self, running: bool) -> None:
        self.submit_button.disabled = running
        self.stop_button.disabled = not running

    _COLOURS: ClassVar[dict[str, str]] = {
        "error": "var(--jp-error-color1, #d32f2f)",
        "warn": "var(--jp-warn-color1, #e65100)",
        "ok": "var(--jp-ui-font-color1, #222)",
        "info": "var(--jp-ui-font-color2, #555)",
    }

    def _set_status(self, text: str, *, kind: str = "info") -> None:
        for secret in self._secrets():
            text = text.replace(secret, config.mask(secret))
        self.status_text = text
        self.status.value = (f'<div class="pienteger-status pienteger-{kind}" '
                             f'style="color:{self._COLOURS[kind]}; line-height:1.35">{html.escape(text)}</div>')

    def _render_history(self, history: list[dict[str, Any]]) -> None:
        rows = []
        for h in reversed(history):
            tokens = f"{h['prompt_tokens']} → {h['completion_tokens']}"
            cost = "cached" if h.get("cached") else format_usd(h.get("cost"))
            rows.append(
                "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                    h["model"], h["status"], tokens, cost, f"{h['seconds']:.2f} s", h["prompt"][:60],
                )) + "</tr>"
            )
        self.history_view.value = (
            "<table><tr><th>model</th><th>status</th><th>tokens</th><th>cost</th><th>time</th><th>prompt</th></tr>"
            + "".join(rows) + "</table>"
        )


