"""``%%pienteger`` (a completion from the cell) and ``%pienteger SUBCOMMAND``.

``load_ipython_extension`` registers them; loading imports neither pandas nor ipywidgets.
The subcommands live in ``magic_commands``; option parsing in ``magic_args``; the
streaming display and formats in ``render``; one-line failures in ``magic_errors``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, kwds, magic_arguments

from .. import config
from ..errors import PientegerError, StreamError
from ..interpolate import interpolate
from ..types import CallRecord, Completion, Estimate
from .args import (
    FORMATS,
    cell_params,
    check_output_name,
    check_workflow,
    fill_words,
    option_error,
    parse_words,
    split_line,
    take_values,
)
from .cells import CellErrors
from .failures import CellFailure, CellInterrupted, describe, scrub
from .help_text import EXAMPLES
from .render import DisplaySink, StreamView, insertion, render_output, sink_for_shell, usage_bundle

if TYPE_CHECKING:  # pragma: no cover
    from .background import JobBoard
    from .usage_line import LiveUsage

def _on_loopback(client: Any) -> bool:
    """Whether the client talks to a service on this machine: the bundled emulator, in practice
    (``%pienteger emulator start``, ``pienteger-nb demo``), whose answers are unrelated prose."""
    from urllib.parse import urlsplit

    return config.is_loopback(urlsplit(str(getattr(client, "base_url", ""))).hostname)


@magics_class
class PientegerMagics(Magics):
    """The pienteger magics. ``clock`` drives the display throttle (tests inject a fake one);
    ``client_factory`` returns the base Client (default: one built from the settings)."""

    def __init__(
        self,
        shell: Any = None,
        *,
        client_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(shell)
        self.client_factory = client_factory
        self.clock = clock
        self.last_view: StreamView | None = None
        self.last_usage: LiveUsage | None = None
        self.emulator: Any = None
        self._saved_settings: tuple[Any, Any] | None = None
        self._cached: tuple[tuple[Any, ...], Any] | None = None
        self.listed_models: dict[str, list[str]] = {}  # base URL -> model ids, once listed
        self.errors = CellErrors()
        self._jobs: JobBoard | None = None
        if shell is not None:
            shell.events.register("post_run_cell", self.errors.after_cell)

    @property
    def jobs(self) -> JobBoard:
        """This kernel's background jobs (made at first use: %load_ext stays light)."""
        if self._jobs is None:
            from .background import JobBoard

            self._jobs = JobBoard()
        return self._jobs

    # --- The client -------------------------------------------------------------------------

    def client(self) -> Any:
        """A Client for this kernel's current settings, with source="magic" and the ledger
        recorder; reused while the settings stay the same, so its connection is kept alive."""
        if self.client_factory is not None:
            return self.client_factory().with_options(source="magic", on_call=self._record)
        settings = config.client_settings()
        if self._cached is None or self._cached[0] != settings:
            from ..client.client import Client

            fresh = Client(source="magic", on_call=self._record)
            if self._cached is not None:
                self._cached[1].close()
            self._cached = (settings, fresh)
        return self._cached[1]

    def _record(self, rec: CallRecord) -> None:
        from ..ledger.default import record_call

        record_call(dataclasses.replace(rec, execution_count=self.execution_count()))

    def execution_count(self) -> int | None:
        """The running cell's number (In [n]); IPython 9 bumps the counter before running it."""
        result = getattr(getattr(self.shell, "displayhook", None), "exec_result", None)
        count = getattr(result, "execution_count", None)
        return count if count is not None else getattr(self.shell, "execution_count", None)

    def fail(self, exc: BaseException, *, what: str = "completion") -> CellFailure:
        """The one-line failure for ``exc``; with ``debug=true`` the original is re-raised."""
        if config.get("debug"):
            raise exc
        return CellFailure(describe(exc, what=what))

    # --- The magic --------------------------------------------------------------------------

    @magic_arguments(name="%pienteger")  # the help's usage line then reads %%pienteger
    @kwds(epilog=EXAMPLES)
    @argument("-m", "--model", action="append", default=None,
              help="model (default: %%pienteger config model); repeat with --compare")
    @argument("-t", "--temperature", type=float, action="append", default=None,
              help="0..2; repeat with --compare")
    @argument("--max-tokens", type=int, default=None, metavar="N", help="tokens to generate at most")
    @argument("--top-p", type=float, default=None, metavar="P", help="nucleus sampling, 0..1")
    @argument("--n", type=int, default=None, metavar="N", help="completions to generate")
    @argument(
        "--stop",
        action="append",
        default=None,
        metavar="S",
        help="stop sequences, one to four: --stop A B or --stop A --stop B (\\n is a newline)",
    )
    @argument("--suffix", default=None, metavar="TEXT", help="text that comes after the completion")
    @argument("--echo", action="store_true", help="prepend the prompt to the text")
    @argument("--logprobs", type=int, default=None, metavar="N", help="log probabilities of the top N tokens")
    @argument("--seed", type=int, action="append", default=None, metavar="N",
              help="best-effort determinism; repeat with --compare")
    @argument("--no-stream", action="store_true", help="wait for the whole completion")
    @argument(
        "-f", "--format", choices=FORMATS, default=None, help="how to show the result (default markdown)"
    )
    @argument("-o", "--output", default=None, metavar="NAME", help="store the Completion in this variable")
    @argument("--no-interpolate", action="store_true", help="send {braces} exactly as typed")
    @argument("--dry-run", action="store_true", help="show the request (key masked); send nothing")
    @argument("--refresh", action="store_true", help="call the service even if an answer is stored; store the new one")
    @argument("--compare", action="store_true",
              help="every -m x -t x --seed at once, side by side in one table (-o keeps the DataFrame)")
    @argument("--background", action="store_true",
              help="return at once; stream into this cell's output with a Stop button (-o set when done)")
    @argument("--insert", action="store_true",
              help="also put the completion into a new cell below (code for -f code, else markdown)")
    @no_var_expand  # options are filled like the prompt (fill_words), never evaluated
    @line_cell_magic
    def pienteger(self, line: str, cell: str | None = None) -> None:
        """Complete the cell's text with the Pienteger API, streaming the answer into the output.

        As a line magic, ``%pienteger SUBCOMMAND`` (see below).
        """
        if cell is None:
            from .commands import run_subcommand

            run_subcommand(self, line)
            return
        self.complete_cell(line, cell)
        return

    def complete_cell(self, line: str, cell: str) -> Completion | None:
        """Run ``%%pienteger`` on a line of options and a cell; returns the Completion."""
        namespace = self.namespace()
        words, taken = take_values(fill_words(split_line(line), namespace))
        args = parse_words(self.pienteger.parser, words)
        if "--stop" in taken:
            args.stop = [*(args.stop or []), *taken["--stop"]]
        if "--suffix" in taken:
            args.suffix = taken["--suffix"][-1]
        check_output_name(args.output)
        check_workflow(args)
        prompt = cell.rstrip("\n")
        if not prompt.strip():
            raise UsageError("the cell is empty: write the prompt on the lines below %%pienteger")
        if not args.no_interpolate:
            prompt = interpolate(prompt, namespace or {})
        try:
            model = args.model or config.get("model")
            fmt = args.format or config.get("format")
            stream = not args.no_stream and bool(config.get("stream"))
            defaults = {"temperature": config.get("temperature"), "max_tokens": config.get("max_tokens")}
            params = cell_params(args, defaults=defaults)
            client = self.client()
            if args.compare:
                self._compare(client, prompt, args, params)
                return None
            if args.dry_run:
                preview = client.request_preview(prompt, model=model, stream=stream, **params)
                self._show_preview(preview, client.estimate(prompt, model=model, **params))
                return None
            if args.background:
                self._background(client, prompt, model=model, fmt=fmt, params=params, output=args.output)
                return None
            started = _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
            live = self._live_usage(model, prompt) if stream and config.get("show_usage") else None
            self.last_usage = live
            if stream:
                completion = self._stream(client, prompt, model=model, fmt=fmt, params=params,
                                          refresh=args.refresh, live=live, started=started)
            else:
                try:
                    completion = client.complete(prompt, model=model, refresh=args.refresh, **params)
                except KeyboardInterrupt:
                    raise CellInterrupted(
                        "KeyboardInterrupt: the request was stopped (recorded as cancelled)"
                    ) from None
                StreamView(sink=sink_for_shell(self.shell)).finish(
                    *render_output(completion, fmt, params=params, started=started))
        except PientegerError as exc:
            raise self.fail(exc) from None
        except ValueError as exc:  # a value the client refuses: an option mistake, said as argparse's are
            if config.get("debug"):
                raise
            raise UsageError(scrub(option_error(str(exc)))) from None
        if config.get("show_usage"):
            fallback = sink_for_shell(self.shell)
            if live is not None:
                live.done(*usage_bundle(completion, emulator=_on_loopback(client)), fallback=fallback)
            else:
                fallback.final(*usage_bundle(completion, emulator=_on_loopback(client)))
        if args.output and self.shell is not None:
            self.shell.user_ns[args.output] = completion
        if args.insert and self.shell is not None:
            self.shell.set_next_input(insertion(completion, fmt), replace=False)
        return completion

    def namespace(self) -> Any:
        """What ``{name}`` fields read: the user's variables, then ``Err`` (errors by cell)."""
        if self.shell is None:
            return None
        return collections.ChainMap(self.shell.user_ns, {"Err": self.errors})

    def _compare(self, client: Any, prompt: str, args: Any, params: dict[str, Any]) -> None:
        from ..batch.comparison import compare
        from .compare_view import compare_bundle

        shared = {k: v for k, v in params.items() if k not in ("temperature", "seed")}
        temperature = args.temperature if args.temperature else params.get("temperature")
        try:
            frame = compare(prompt, models=args.model, temperature=temperature, seed=args.seed,
                            client=client.with_options(on_call=self._record), **shared)
        except KeyboardInterrupt:
            raise CellInterrupted("KeyboardInterrupt: the comparison was stopped") from None
        sink_for_shell(self.shell).final(compare_bundle(frame), {"pienteger": {"compare": len(frame)}})
        if args.output and self.shell is not None:
            self.shell.user_ns[args.output] = frame

    def _background(
        self, client: Any, prompt: str, *, model: str, fmt: str, params: dict[str, Any], output: str | None
    ) -> None:
        from ..ledger.default import record_call

        client.require_key()
        client.request_preview(prompt, model=model, stream=True, **params)  # bad input fails the cell now
        cell = self.execution_count()

        def record(rec: CallRecord) -> None:  # the worker records after this cell has ended
            record_call(dataclasses.replace(rec, execution_count=cell))

        def done(job: Any) -> None:
            if output and self.shell is not None:
                self.shell.user_ns[output] = job.completion

        self.jobs.start(client.with_options(on_call=record), prompt, model=model, params=params, fmt=fmt,
                        on_done=done, output_name=output)

    def _stream(
        self, client: Any, prompt: str, *, model: str, fmt: str, params: dict[str, Any], refresh: bool = False,
        live: LiveUsage | None = None, started: str | None = None,
    ) -> Completion:
        view = StreamView(sink=sink_for_shell(self.shell, markdown=fmt == "markdown"), clock=self.clock)
        self.last_view = view
        several = params.get("n", 1) > 1
        text = ""
        try:
            with client.stream(prompt, model=model, refresh=refresh, **params) as s:
                for delta in s:
                    if several:  # n > 1: all choices, in index order, as they grow
                        texts = s.texts
                        shown = view.update("\n\n---\n\n".join(texts[i] for i in sorted(texts)))
                        if shown and live is not None:  # counted only when shown: texts are whole
                            live.recount(texts.values())
                    else:
                        text += delta
                        shown = view.update(text)
                        if live is not None:
                            live.count(delta)
                    if shown and live is not None:  # on the text's own ticks: no extra update rate
                        live.tick()
            completion = s.completion
        except KeyboardInterrupt:
            # Leaving the `with` by the interrupt closed the response and recorded "cancelled".
            view.stop(metadata={"pienteger": {"status": "cancelled", "model": model}})
            kept = "the partial text is kept above" if view.text else "no text had arrived"
            raise CellInterrupted(
                f"KeyboardInterrupt: generation stopped; {kept} (recorded as cancelled)"
            ) from None
        except PientegerError as exc:  # a broken stream, or an error event mid-stream
            partial = exc.partial_text if isinstance(exc, StreamError) else ""
            if view.text or partial:
                view.text = view.text or partial
                view.stop(mark="[stream broken]", metadata={"pienteger": {"status": "error", "model": model}})
            raise
        if completion is None:  # closed from elsewhere: what arrived stays, marked
            view.stop(metadata={"pienteger": {"status": "cancelled", "model": model}})
            raise CellInterrupted("generation stopped; the partial text is kept above")
        view.finish(*render_output(completion, fmt, params=params, started=started))
        return completion

    def _live_usage(self, model: str, prompt: str) -> LiveUsage:
        from .usage_line import LiveUsage

        """The live usage line: a display of its own in a notebook, none in a terminal."""
        sink = sink_for_shell(self.shell)
        return LiveUsage(model=model, prompt=prompt, sink=DisplaySink() if isinstance(sink, DisplaySink) else None,
                         clock=self.clock)

    def _show_preview(self, preview: dict[str, Any], estimate: Estimate | None = None) -> None:
        import json

        headers = "\n".join(f"{k}: {v}" for k, v in preview.get("headers", {}).items())
        body = json.dumps(preview.get("json"), indent=2, ensure_ascii=False)
        text = scrub(f"{preview.get('method', 'POST')} {preview.get('url', '')}\n{headers}\n\n{body}\n")
        meta: dict[str, Any] = {"dry_run": True}
        if estimate is not None:  # what it would cost, under the request
            text += estimate.describe() + "\n"
            meta["estimate"] = dataclasses.asdict(estimate)
        text += "(dry run: nothing was sent)"
        sink_for_shell(self.shell).final({"text/plain": text}, {"pienteger": meta})

    def close(self) -> None:
        """Stop the emulator if this extension started one, restoring the settings it changed."""
        if self.emulator is not None:
            from .commands import stop_emulator

            stop_emulator(self)
        if self._cached is not None:
            self._cached[1].close()
            self._cached = None

    def unload(self) -> None:
        """Everything ``close`` does, and stop the background jobs and the error hook."""
        self.close()
        if self._jobs is not None:
            self._jobs.close()
        if self.shell is not None:
            try:
                self.shell.events.unregister("post_run_cell", self.errors.after_cell)
            except ValueError:
                pass


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext pienteger_nb``: register ``%%pienteger`` and ``%pienteger``."""
    magics = PientegerMagics(ip)
    ip.register_magics(magics)


def unload_ipython_extension(ip: Any) -> None:
    """``%unload_ext pienteger_nb``: stop what the magics started and remove them."""
    registry = ip.magics_manager.registry
    magics = registry.pop("PientegerMagics", None)
    if magics is not None:
        magics.unload()
    for kind in ("line", "cell"):
        ip.magics_manager.magics[kind].pop("pienteger", None)


__all__ = ["PientegerMagics", "load_ipython_extension", "unload_ipython_extension"]
