"""The whole product in a real browser: JupyterLab 4 + Chromium, the emulator behind the kernel.

Asserts only what the rendered page shows: text streaming in while the cell still runs, the
form's Submit and Stop working from real clicks, an error as one line. Screenshots go to the
artifacts dir (and to docs/ with UPDATE_DOCS_SCREENSHOTS=1: the README's pictures).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from . import labtools
from .labtools import (
    BROWSER_KEY,
    CELLS,
    OWN_OUTPUTS,
    WIDGET_TEXT,
    Lab,
    hide_left_area,
    open_notebook,
    run_all,
    save_artifact,
)

pytestmark = pytest.mark.browser

FORM_PROMPT = "The old lighthouse keeper looked out over the sea and"


def test_magic_streams_while_the_cell_runs(lab: Lab, lab_page: Any) -> None:
    expect = labtools.expect()
    page = lab_page
    url = lab.notebook("magic.ipynb", [
        "%load_ext pienteger_nb",
        "%%pienteger --max-tokens 120 -t 0\nWrite a few sentences about lighthouses at night.",
    ])
    open_notebook(page, url)
    run_all(page)
    cell = page.locator(CELLS).nth(1)
    out = cell.locator(OWN_OUTPUTS)
    prompt = cell.locator(".jp-InputPrompt")
    # Text is on screen while the prompt still says [*]: it streamed, it did not arrive at the end.
    page.wait_for_function(
        """([cellSel, outSel]) => {
            const cell = document.querySelectorAll(cellSel)[1];
            if (!cell) return false;
            const out = cell.querySelector(outSel);
            const running = cell.querySelector('.jp-InputPrompt').textContent.includes('*');
            return running && out && out.textContent.trim().length > 0;
        }""",
        arg=[CELLS, OWN_OUTPUTS],
        timeout=30_000,
    )
    early = out.first.inner_text().strip()
    assert early, "streamed text should be visible while the cell runs"
    save_artifact(page, lab.prefix + "streaming_midway.png")
    expect(prompt).to_have_text("[2]:")
    final = cell.locator(".jp-Cell-outputArea").inner_text()
    assert len(final.strip()) > len(early), "the text should have grown after the first update"
    assert "Traceback" not in final
    hide_left_area(page)
    cells = page.locator(CELLS)
    save_artifact(page, lab.prefix + "streaming.png", docs="streaming.png" if lab.kind == "lab" else None,
                  region=[cells.nth(0), cells.nth(1)])


def test_form_submit_and_stop_from_real_clicks(lab: Lab, lab_page: Any) -> None:
    expect = labtools.expect()
    page = lab_page
    url = lab.notebook("form.ipynb", [
        "from pienteger_nb import PromptForm\n\nform = PromptForm()\nform",
    ])
    open_notebook(page, url)
    run_all(page)
    cell = page.locator(CELLS).nth(0)
    form = cell.locator(".pienteger-form")
    expect(form).to_be_visible()
    status = form.locator(".pienteger-status")
    expect(status).to_contain_text("Ready")  # the model list came from the API
    submit = form.locator("button.widget-button", has_text="Submit")
    stop = form.locator("button.widget-button", has_text="Stop")
    out = form.locator(WIDGET_TEXT)
    expect(stop).to_be_disabled()

    form.locator(".widget-textarea textarea").fill(FORM_PROMPT)
    lab.emulator.tokens_per_second = 15
    lab.emulator.queue_fault("stall", after=12)  # streams 12 events, then holds the stream open
    submit.click()
    expect(submit).to_be_disabled()
    expect(stop).to_be_enabled()
    expect(out.first).not_to_be_empty()
    first = out.first.inner_text()
    # Tokens keep arriving into the widget: the text grows while the call runs.
    expect(out.first).not_to_have_text(first)
    grown = out.first.inner_text()
    assert grown.startswith(first.rstrip()) and len(grown) > len(first)

    stop.click()
    expect(status).to_contain_text("Stopped")
    expect(status).to_contain_text("partial text kept")
    expect(submit).to_be_enabled()
    expect(stop).to_be_disabled()
    partial = out.first.inner_text()
    assert partial.startswith(grown.rstrip()), "Stop keeps the text that had arrived"

    # Submit again without a fault: the whole answer lands and the status gives the figures.
    lab.emulator.tokens_per_second = 60
    form.locator(".widget-text input[type=number]").fill("90")
    submit.click()
    expect(status).to_contain_text(re.compile(
        r"\d+ → \d+ tokens \((reported|estimated)\) · (unpriced|cached|\$[\d.]+) · [\d.]+ s · finish: "))
    expect(out.first).not_to_be_empty()
    hide_left_area(page)  # the form at full width
    form.scroll_into_view_if_needed()
    save_artifact(page, lab.prefix + "form.png", docs="form.png" if lab.kind == "lab" else None, region=[cell])

    # An API error shows as one sentence in the status line; the form stays usable.
    lab.emulator.queue_fault("status", status=401)
    submit.click()
    expect(status).to_contain_text("Error: 401")
    assert "\n" not in status.inner_text().strip()
    expect(submit).to_be_enabled()
    save_artifact(page, lab.prefix + "form_error.png", region=[form])

    # Saved with its widget state (saveState is on), the notebook holds no trace of the key.
    page.evaluate("jupyterapp.commands.execute('docmanager:save')")
    saved = lab.root / "form.ipynb"
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
    text = saved.read_text()
    assert "application/vnd.jupyter.widget-state+json" in text
    assert BROWSER_KEY not in text
    assert BROWSER_KEY[-10:] not in text


def test_api_error_shows_as_one_line(lab: Lab, lab_page: Any) -> None:
    expect = labtools.expect()
    page = lab_page
    url = lab.notebook("error.ipynb", [
        "%load_ext pienteger_nb",
        "%%pienteger -m no-such-model\nHello",
        "print('after the error')",
    ])
    open_notebook(page, url)
    run_all(page)
    cell = page.locator(CELLS).nth(1)
    outputs = cell.locator(OWN_OUTPUTS)
    expect(outputs.first).not_to_be_empty()
    expect(cell.locator(".jp-InputPrompt")).not_to_have_text(re.compile(r"\*"))
    text = cell.locator(".jp-Cell-outputArea").inner_text().strip()
    assert "Traceback" not in text
    assert "no-such-model" in text or "404" in text
    assert len(text.splitlines()) == 1, f"expected one line, got: {text!r}"
    assert BROWSER_KEY not in page.content()
    save_artifact(cell, "error.png")
