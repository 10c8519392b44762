"""The workflow features in a real browser (JupyterLab 4 + Chromium): a background cell keeps
streaming while another cell runs and finishes, its Stop button stops it, and --insert adds a
new cell below holding the completion."""

from __future__ import annotations

from typing import Any

import pytest

from . import labtools
from .labtools import CELLS, OWN_OUTPUTS, WIDGET_TEXT, Lab, open_notebook, run_all, save_artifact

pytestmark = pytest.mark.browser



def test_background_cell_streams_while_another_runs_and_stop_stops_it(lab: Lab, lab_page: Any) -> None:
    expect = labtools.expect()
    page = lab_page
    url = lab.notebook("background.ipynb", [
        "%load_ext pienteger_nb",
        "%%pienteger --background --max-tokens 3000 -o story\nTell a very long story about the sea.",
        "print('other cell', 6 * 7)",
    ])
    open_notebook(page, url)
    run_all(page)
    cells = page.locator(CELLS)
    job, other = cells.nth(1), cells.nth(2)
    expect(job.locator(".jupyter-widgets.pienteger-background")).to_be_visible()  # a real widget, not a text repr
    text = job.locator(WIDGET_TEXT).first
    expect(text).not_to_be_empty()
    # The other cell has run and finished while the story still streams.
    expect(other.locator(".jp-InputPrompt")).to_have_text("[3]:")
    expect(other.locator(OWN_OUTPUTS)).to_contain_text("other cell 42")
    status = job.locator(".pienteger-job-status")
    expect(status).to_contain_text("streaming")
    first = text.inner_text()
    expect(text).not_to_have_text(first)  # still growing after the other cell finished
    save_artifact(page, "background_streaming.png", region=[job, other])

    job.locator("button.widget-button", has_text="Stop").click()
    expect(status).to_contain_text("stopped")  # set once the worker thread has ended
    expect(job.locator("button.widget-button", has_text="Stop")).to_be_disabled()
    stopped = text.inner_text()
    assert stopped.strip() and stopped.startswith(first.strip()[:20])
    assert "Traceback" not in job.inner_text()


def test_insert_adds_a_cell_below_with_the_completion(lab: Lab, lab_page: Any) -> None:
    expect = labtools.expect()
    page = lab_page
    url = lab.notebook("insert.ipynb", [
        "%load_ext pienteger_nb",
        "%%pienteger -f code --insert --max-tokens 20 -t 0 -o code\n# Python: add two numbers",
    ])
    open_notebook(page, url)
    run_all(page)
    cells = page.locator(CELLS)
    expect(cells).to_have_count(3)
    expect(cells.nth(1).locator(".jp-InputPrompt")).to_have_text("[2]:")
    shown = cells.nth(1).locator(OWN_OUTPUTS).first.inner_text().strip()
    inserted = cells.nth(2).locator(".jp-InputArea-editor .cm-content")
    expect(inserted).not_to_be_empty()
    first_line = shown.splitlines()[0].strip()
    assert first_line and first_line in inserted.inner_text()
    save_artifact(page, "insert.png", region=[cells.nth(1), cells.nth(2)])
