"""The magic's streaming and the PromptForm in Notebook 7 (``jupyter notebook``), with the same
assertions as the JupyterLab tests: the bodies are test_lab's, run against the other front end."""

from __future__ import annotations

from typing import Any

import pytest

from . import test_lab  # the module, not its test names, so pytest does not collect them twice here
from .labtools import Lab

pytestmark = pytest.mark.browser


def test_magic_streams_while_the_cell_runs_in_notebook7(notebook7: Lab, notebook7_page: Any) -> None:
    test_lab.test_magic_streams_while_the_cell_runs(notebook7, notebook7_page)


def test_form_submit_and_stop_from_real_clicks_in_notebook7(notebook7: Lab, notebook7_page: Any) -> None:
    test_lab.test_form_submit_and_stop_from_real_clicks(notebook7, notebook7_page)
