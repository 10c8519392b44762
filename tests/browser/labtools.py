"""Helpers for the browser tests: what is missing, the running Lab, page actions, screenshots."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import nbformat

BROWSER_KEY = "pk-browser-0123456789abcdefSECRET"
# CHROMIUM_PATH names another build (e.g. Ubuntu's chromium-browser); Debian's is the default.
CHROMIUM = (os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
            or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    # This closed network has no Google services: without these Chromium retries them forever.
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-gpu",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ARTIFACTS", REPO / "artifacts"))
DOCS = REPO / "docs"
# The README's pictures are rewritten only when asked, so a test run leaves the tree clean.
# Where a notebook's cells, a cell's own outputs and the text of an Output widget are on the page.
CELLS = ".jp-NotebookPanel .jp-Notebook .jp-Cell"
OWN_OUTPUTS = ".jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output"
WIDGET_TEXT = ".widget-output .jp-OutputArea-output"

UPDATE_DOCS = os.environ.get("UPDATE_DOCS_SCREENSHOTS", "") not in ("", "0")
INSTALL_HINT = (
    "apt-get install -y chromium && pip install playwright pytest-playwright "
    "(no `playwright install` needed: the tests use /usr/bin/chromium)"
)


def expect() -> Any:
    """Playwright's ``expect`` (imported here, so collecting the tests needs no playwright)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    for module in ("playwright", "pytest_playwright"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed; install it with: {INSTALL_HINT}"
    if not os.path.exists(CHROMIUM):
        return f"Chromium is not installed; install it with: {INSTALL_HINT}"
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


class Lab:
    """A running front end (``kind``: ``lab`` or ``notebook7``): its URL, token, notebook folder
    and the emulator behind it."""

    def __init__(self, *, url: str, token: str, root: Path, emulator: Any, usage_db: Path, kind: str = "lab"):
        self.url, self.token, self.root, self.emulator, self.usage_db = url, token, root, emulator, usage_db
        self.kind = kind

    @property
    def prefix(self) -> str:
        """Prefix for this front end's screenshots ("" for Lab, whose pictures the README shows)."""
        return "" if self.kind == "lab" else f"{self.kind}_"

    def notebook(self, name: str, cells: list[str]) -> str:
        """Write a notebook of code cells; returns the URL that opens it."""
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                     "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        nbformat.write(nb, self.root / name)
        if self.kind == "notebook7":
            return f"{self.url}/notebooks/{name}?token={self.token}"
        # ?reset discards a saved workspace layout; the token in the URL logs us in.
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"


def open_notebook(page: Any, url: str) -> None:
    """Open a notebook and wait until its kernel is really connected and idle."""
    page.goto(url)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    if "/notebooks/" in url:  # Notebook 7 has no status bar: ask the app for its kernel's state
        page.wait_for_function(
            """() => {
                const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                const kernel = panel && panel.sessionContext && panel.sessionContext.session
                    && panel.sessionContext.session.kernel;
                return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
            }""",
            timeout=90_000,
        )
        return
    # The toolbar's indicator says idle before any kernel exists; the status bar does not.
    page.get_by_text("Python 3 (ipykernel) | Idle", exact=True).wait_for(timeout=90_000)


def hide_left_area(page: Any) -> None:
    """Give the notebook the page's width (Lab's side bar; Notebook 7 has none to hide)."""
    page.evaluate("""() => {
        const c = window.jupyterapp.commands;
        if (c.hasCommand('application:toggle-left-area') && c.isEnabled('application:toggle-left-area')) {
            c.execute('application:toggle-left-area');
        }
    }""")


def run_all(page: Any) -> None:
    """Run All Cells through the menu bar, like a user would."""
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")


def save_artifact(page_or_locator: Any, name: str, *, docs: str | None = None,
                  region: list[Any] | None = None, pad: int = 12) -> Path:
    """A screenshot into the artifacts dir (and into docs/ as ``docs`` with UPDATE_DOCS_SCREENSHOTS=1).

    With ``region`` (locators on ``page_or_locator``, a page), only the box around them is kept.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    if region:
        boxes = [loc.bounding_box() for loc in region]
        left = max(min(b["x"] for b in boxes) - pad, 0)
        top = max(min(b["y"] for b in boxes) - pad, 0)
        right = max(b["x"] + b["width"] for b in boxes) + pad
        bottom = max(b["y"] + b["height"] for b in boxes) + pad
        page_or_locator.screenshot(path=str(path),
                                   clip={"x": left, "y": top, "width": right - left, "height": bottom - top})
    else:
        page_or_locator.screenshot(path=str(path))
    if docs and UPDATE_DOCS:
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / docs)
    return path
