"""``pienteger-nb demo``: the quickstart notebook run against the bundled emulator, or JupyterLab on it.

``run_demo(args)`` starts the emulator on loopback with a throwaway key, executes the bundled
``quickstart.ipynb`` (shipped inside the package) in a fresh kernel pointed at it, writes the
executed notebook and an HTML copy, and prints what the calls cost (from a ledger of its own, so
the user's ledger stays clean). With ``--lab`` it opens JupyterLab on a copy of the notebooks in
``OUT/notebooks`` instead, kernels pointed at the emulator, until Ctrl-C: the originals are never
opened, so saving in Lab cannot change them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from . import examples

PROG = "pienteger-nb demo"
INSTALL_HINT = 'pip install "pienteger_nb[demo]"'
QUICKSTART = examples.QUICKSTART
# The headless run: fast enough that the demo takes seconds.
TOKENS_PER_SECOND = 200.0
# --lab is watched by a person: slow enough to see tokens arrive and to press Stop halfway.
LAB_TOKENS_PER_SECOND = 10.0


class DemoError(Exception):
    """A reason the demo cannot go on: one line for the user."""


def missing_dependencies(*, lab: bool) -> list[str]:
    """Names of the demo's own dependencies that are not installed."""
    needed = ["nbclient", "nbconvert", "nbformat", "ipykernel"] + (["jupyterlab"] if lab else [])
    return [name for name in needed if importlib.util.find_spec(name) is None]


def find_notebooks(explicit: str | None = None) -> Path:
    """The notebooks folder: ``explicit``, else the notebooks shipped inside the package."""
    folder = Path(explicit).expanduser() if explicit else examples.folder()
    if not (folder / QUICKSTART).is_file():
        where = "--notebooks DIR" if explicit else "the installed package"
        raise DemoError(
            f"no {QUICKSTART} in {folder} ({where}): pass --notebooks DIR with a folder that has one, "
            f"or reinstall with {INSTALL_HINT}"
        )
    return folder


def make_out(out: Path) -> Path:
    """The folder for the demo's files, created if need be."""
    if out.exists() and not out.is_dir():
        raise DemoError(f"--out {out} is a file, not a folder: pass a folder for the demo's files")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from exc
    return out


def check_ledger(db: Path) -> None:
    """Fail now, not at the notebook's last cell, when the demo's ledger cannot be opened."""
    from .ledger.store import UsageLog, UsageLogError

    try:
        UsageLog(str(db)).close()
    except UsageLogError as exc:
        raise DemoError(f"cannot open the usage ledger at {db} (--db): {exc.__cause__ or exc}") from exc


def kernel_env(*, url: str, api_key: str, db: Path) -> dict[str, str]:
    """This process's environment with every ``PIENTEGER_*`` setting replaced by the emulator's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIENTEGER_")}
    env.update(PIENTEGER_API_KEY=api_key, PIENTEGER_BASE_URL=url, PIENTEGER_USAGE_DB=str(db))
    return env


def start_emulator(api_key: str, *, tokens_per_second: float = TOKENS_PER_SECOND) -> Any:
    """The bundled emulator, started on loopback."""
    from .emulator import Emulator

    return Emulator(api_key=api_key, host="127.0.0.1", port=0, tokens_per_second=tokens_per_second).start()


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def execute_notebook(
    source: Path, *, env: dict[str, str], cwd: Path, timeout: float, kernel_log: Path | None = None
) -> tuple[Any, str | None]:
    """(the executed notebook, None) or (the notebook as far as it ran, a one-line failure).

    The kernel's own stderr (start-up warnings, a crash) goes to ``kernel_log`` when given.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, DeadKernelError

    nb = nbformat.read(source, as_version=4)
    current = {"index": -1}

    def on_cell_start(cell: Any, cell_index: int) -> None:
        current["index"] = cell_index

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        on_cell_start=on_cell_start,
    )
    log = open(kernel_log, "wb") if kernel_log else None  # noqa: SIM115 (closed below)
    try:
        client.execute(env=env, **({"stderr": log} if log else {}))
    except (CellControlSignal, DeadKernelError, TimeoutError) as exc:
        index = current["index"]
        cell = nb.cells[index] if 0 <= index < len(nb.cells) else None
        where = f"cell {index + 1} of {source.name}"
        if cell is not None and _first_line(cell.source):
            where += f" ({_first_line(cell.source)[:60]})"
        ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
        return nb, f"{where} failed: {ename}: {_first_line(_strip_ansi(evalue)) or 'no message'}"
    except RuntimeError as exc:  # the kernel did not start
        where = f" (see {kernel_log})" if kernel_log else ""
        return nb, f"the notebook's kernel failed: {_first_line(str(exc))}{where}"
    finally:
        if log:
            log.close()
    return nb, None


def write_outputs(nb: Any, *, out: Path, name: str) -> tuple[Path, Path]:
    """Write the executed notebook and its HTML copy into ``out``; returns both paths."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook_path = out / name
    html_path = notebook_path.with_suffix(".html")
    nbformat.write(nb, notebook_path)
    body, _resources = HTMLExporter().from_notebook_node(nb)
    html_path.write_text(body, encoding="utf-8")
    return notebook_path, html_path


def ledger_summary(db: Path, *, since: _dt.datetime) -> list[str]:
    """Lines saying how many calls the ledger holds since ``since`` and their tokens by model."""
    if not db.exists():
        return ["Calls this run: none recorded"]
    import pandas as pd

    from .ledger.store import UsageLog

    log = UsageLog(str(db))
    try:
        frame = log.frame()
    finally:
        log.close()
    in_ledger = len(frame)
    if len(frame) and "time" in frame:
        times = pd.to_datetime(frame["time"], utc=True)
        frame = frame[times >= pd.Timestamp(since)]
    # The notebook's usage table shows the whole ledger, which keeps earlier demo runs too: say
    # which calls these figures count, so "5 calls" here and 36 rows there do not look like a bug.
    earlier = in_ledger - len(frame)
    note = [(f"The ledger also keeps {earlier} calls from earlier demo runs; the notebook's usage "
             f"table counts all {in_ledger}.")] if earlier else []
    if not len(frame):
        return ["Calls this run: none recorded", *note]
    statuses = frame["status"].astype(str).value_counts()
    detail = ", ".join(f"{statuses[s]} {s}" for s in ("ok", "error", "cancelled") if s in statuses)
    columns = ["prompt_tokens", "completion_tokens", "total_tokens"]
    frame = frame.assign(model=frame["model"].astype(str), **{c: frame[c].fillna(0) for c in columns})
    by_model = frame.groupby("model")[columns].sum().join(frame.groupby("model").size().rename("calls"))
    width = max(len("model"), *(len(m) for m in by_model.index))
    lines = [
        f"Calls this run: {len(frame)} ({detail}); tokens by model:",
        f"  {'model':<{width}}  {'calls':>5}  {'prompt':>7}  {'completion':>10}  {'total':>7}",
    ]
    for model, row in by_model.iterrows():
        lines.append(
            f"  {model:<{width}}  {int(row['calls']):>5}  {int(row['prompt_tokens']):>7}"
            f"  {int(row['completion_tokens']):>10}  {int(row['total_tokens']):>7}"
        )
    return lines + note


def _print_error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def run_demo(args: argparse.Namespace) -> int:
    """``pienteger-nb demo [--lab]``; returns the exit status."""
    missing = missing_dependencies(lab=args.lab)
    if missing:
        _print_error(f"the demo needs {', '.join(missing)} (not installed): {INSTALL_HINT}")
        return 1
    try:
        notebooks = find_notebooks(args.notebooks)
        # Absolute: the kernel runs in `out`, and a relative ledger path would land in out/out/.
        out = make_out(Path(args.out).expanduser().resolve())
        db = Path(args.db).expanduser().resolve() if args.db else out / "usage.sqlite"
        check_ledger(db)
        if args.lab:
            notebooks = copy_for_lab(notebooks, out / "notebooks")
        api_key = args.api_key or "pk-demo-" + secrets.token_hex(16)
        emulator = start_emulator(api_key, tokens_per_second=LAB_TOKENS_PER_SECOND if args.lab else TOKENS_PER_SECOND)
    except (DemoError, OSError) as exc:
        _print_error(str(exc))
        return 1
    env = kernel_env(url=emulator.url, api_key=api_key, db=db)
    since = _dt.datetime.now(_dt.UTC)
    try:
        if args.lab:
            return run_lab(notebooks=notebooks, env=env, out=out, port=args.port, emulator_url=emulator.url)
        return _run_quickstart(notebooks=notebooks, env=env, out=out, db=db, since=since,
                               timeout=args.timeout, emulator_url=emulator.url)
    finally:
        emulator.stop()
        if args.lab:
            print("\n".join(ledger_summary(db, since=since)))


def copy_for_lab(notebooks: Path, workdir: Path) -> Path:
    """``workdir`` holding a copy of ``notebooks``, for Lab to open and save into.

    Lab saves (and leaves ``.ipynb_checkpoints/``) where it runs, so it must never run on the
    installed or checked-out originals. A copy already there from an earlier run is kept as the
    user left it; only missing notebooks are copied.
    """
    try:
        copied, kept = examples.copy_to(workdir, source=notebooks)
    except OSError as exc:
        raise DemoError(f"cannot copy the notebooks into {workdir} (--out): {exc.strerror or exc}") from exc
    note = f" ({len(kept)} kept as you left them)" if kept else ""
    print(f"Notebooks:  {workdir}  (a copy to edit; {len(copied)} copied{note})")
    return workdir


def _run_quickstart(*, notebooks: Path, env: dict[str, str], out: Path, db: Path, since: _dt.datetime,
                    timeout: float, emulator_url: str) -> int:
    source = notebooks / QUICKSTART
    print(f"Running {source} against the bundled emulator at {emulator_url} ...", flush=True)
    nb, failure = execute_notebook(source, env=env, cwd=out, timeout=timeout, kernel_log=out / "kernel.log")
    notebook_path, html_path = write_outputs(nb, out=out, name=QUICKSTART)
    if failure:
        _print_error(f"{failure} (the notebook as far as it ran: {notebook_path})")
        return 1
    print("\n".join(ledger_summary(db, since=since)))
    print("The answers are the emulator's public-domain prose, unrelated to the prompts: the demo shows "
          "the plumbing, not a model.")
    print("Files:")
    print(f"  executed notebook  {notebook_path}")
    print(f"  HTML copy          {html_path}")
    print(f"  usage ledger       {db}")
    print("Next: pienteger-nb demo --lab opens a copy of all the notebooks in JupyterLab with the emulator "
          "running; pienteger-nb notebooks DIR copies them out for your own use.")
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_lab(proc: subprocess.Popen[bytes], url: str, *, deadline_s: float = 90.0) -> bool:
    """True once JupyterLab answers ``/api/status``; False when it exits or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)  # polling a starting server: there is nothing to wait on instead
    return False


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_lab(*, notebooks: Path, env: dict[str, str], out: Path, port: int | None, emulator_url: str) -> int:
    """JupyterLab on ``notebooks`` with ``env`` (the emulator's settings) until Ctrl-C; the exit status."""
    port = port or _free_port()
    token = secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--port-retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebooks}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log_path = out / "jupyterlab.log"
    # Ctrl-C and `kill PID` both stop JupyterLab and the emulator (SIGINT set explicitly: a shell
    # that starts us in the background leaves it ignored).
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    with open(log_path, "wb") as log:
        # Own session: a terminal Ctrl-C reaches only us, and we stop JupyterLab cleanly (it
        # would otherwise ask "Shutdown this Jupyter server?" on a stdin it does not have).
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if not _wait_for_lab(proc, f"http://127.0.0.1:{port}/api/status?token={token}"):
                _print_error(f"JupyterLab did not start; see {log_path}")
                return 1
            print(f"Emulator:   {emulator_url}  (kernels started in this JupyterLab use it; its answers are "
                  f"public-domain prose unrelated to the prompt, {LAB_TOKENS_PER_SECOND:g} tokens a second)")
            print(f"JupyterLab: http://127.0.0.1:{port}/lab?token={token}")
            print(f"Log:        {log_path}")
            print("Press Ctrl-C to stop JupyterLab and the emulator.", flush=True)
            code = proc.wait()
            _print_error(f"JupyterLab exited with status {code}; see {log_path}")
            return 1
        except KeyboardInterrupt:
            print("\nStopping JupyterLab and the emulator ...", flush=True)
            return 0
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
