"""Real-browser fixtures: JupyterLab 4 in a subprocess, the emulator in this process, Debian's Chromium.

The kernel reaches the emulator over loopback: JupyterLab gets PIENTEGER_API_KEY,
PIENTEGER_BASE_URL and PIENTEGER_USAGE_DB in its environment and kernels inherit them.
Without Chromium or Playwright the tests skip and say how to install them; under CI=true a
missing browser is a failure, so a broken install step cannot hide behind a green run.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .labtools import (
    ARTIFACTS,
    BROWSER_KEY,
    CHROMIUM,
    CHROMIUM_ARGS,
    Lab,
    free_port,
    in_ci,
    missing_browser,
    write_json,
)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    # Debian's Chromium, not a downloaded one; Playwright adds --no-sandbox (root needs it).
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "headless": True,
            "args": [*browser_type_launch_args.get("args", []), *CHROMIUM_ARGS]}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": 1100, "height": 900},
            "device_scale_factor": 2}  # crisp README pictures


@pytest.fixture(scope="session")
def browser_ready() -> None:
    """Skip (or fail under CI=true) when Chromium or Playwright is missing."""
    reason = missing_browser()
    if reason:
        if in_ci():
            pytest.fail(f"CI=true but the browser tests cannot run: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_emulator(browser_ready: None) -> Iterator[Any]:
    """The emulator, in this process, slow enough (30 tokens/s) that streaming can be watched;
    texts run to max_tokens, so a test knows how long a stream lasts."""
    from pienteger_nb.emulator import Emulator

    with Emulator(api_key=BROWSER_KEY, tokens_per_second=30, natural_end=False) as emu:
        yield emu


def _serve(kind: str, base: Path, lab_emulator: Any) -> Iterator[Lab]:
    """A Jupyter front end (``lab``: JupyterLab 4, ``notebook7``: Notebook 7) on
    127.0.0.1:<free port> with isolated dirs and a random token; stopped by PID."""
    root = base / "nbs"
    root.mkdir()
    home = base / "home"
    settings = home / "lab-settings"
    # No news toast over the page; every cell stays in the DOM; widget state is saved with the
    # notebook (so a test can prove the key is not in it). Notebook 7 reads the same settings.
    write_json(settings / "@jupyterlab/apputils-extension/notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    write_json(settings / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings",
                {"windowingMode": "none"})
    write_json(settings / "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings",
                {"saveState": True})
    usage_db = base / "usage.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIENTEGER_")}
    env.update(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        IPYTHONDIR=str(home / "ipython"),
        PIENTEGER_API_KEY=BROWSER_KEY,
        PIENTEGER_BASE_URL=lab_emulator.url,
        PIENTEGER_USAGE_DB=str(usage_db),
    )
    port, token = free_port(), secrets.token_hex(16)
    app = ["-m", "jupyterlab", "--LabApp.news_url=None"] if kind == "lab" else ["-m", "notebook"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"{kind}.log" if kind != "lab" else ARTIFACTS / "jupyterlab.log"  # kernels' stderr too
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, *app, "--no-browser", "--allow-root",
             "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
             "--expose-app-in-browser"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:  # polling a subprocess's HTTP port: there is no event to wait on
                try:
                    with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not start; see {log_path}")
                time.sleep(0.25)
            yield Lab(url=url, token=token, root=root, emulator=lab_emulator, usage_db=usage_db, kind=kind)
        finally:
            proc.terminate()  # the server shuts its kernels down and exits
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, lab_emulator: Any) -> Iterator[Lab]:
    """JupyterLab 4, the emulator behind its kernels."""
    yield from _serve("lab", tmp_path_factory.mktemp("jlab"), lab_emulator)


@pytest.fixture(scope="session")
def notebook7(tmp_path_factory: pytest.TempPathFactory, lab_emulator: Any) -> Iterator[Lab]:
    """Notebook 7 (``jupyter notebook``), the same emulator behind its kernels."""
    if importlib.util.find_spec("notebook") is None:
        reason = 'Notebook 7 is not installed; pip install -e ".[test]" installs it (the notebook package)'
        if in_ci():
            pytest.fail(f"CI=true but the Notebook 7 tests cannot run: {reason}", pytrace=False)
        pytest.skip(reason)
    yield from _serve("notebook7", tmp_path_factory.mktemp("nb7"), lab_emulator)


def _page(front: Lab, request: pytest.FixtureRequest) -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)  # expect() has its own 5 s default
    page = request.getfixturevalue("page")
    page.set_default_timeout(60_000)
    front.emulator.reset()
    front.emulator.tokens_per_second = 30
    return page


@pytest.fixture
def lab_page(browser_ready: None, lab: Lab, request: pytest.FixtureRequest) -> Any:
    """A Playwright page (pytest-playwright's), asked for only once the browser is known to exist."""
    return _page(lab, request)


@pytest.fixture
def notebook7_page(browser_ready: None, notebook7: Lab, request: pytest.FixtureRequest) -> Any:
    """A Playwright page for the Notebook 7 tests."""
    return _page(notebook7, request)


