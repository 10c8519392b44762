"""One notebook executed by nbclient in a real kernel against the emulator: the streamed
completion is saved as its final formatted output with provenance, a failing cell stops
Run All with a one-line error, and the key is nowhere in the saved file."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY

pytestmark = pytest.mark.notebook

CELLS = [
    "%load_ext pienteger_nb",
    "topic = 'lighthouses'",
    "%%pienteger --max-tokens 40 -o res\nWrite a paragraph about {topic}",
    "print(repr(res.text)); print(res.usage.completion_tokens, res.request_id)",
    "%%pienteger --dry-run\nAbout {topic}",
    "%pienteger config model=text-ada-001",
    "%%pienteger -t 9\nthis temperature is out of range",
    "print('after the failure')",
]


def test_notebook_saves_the_streamed_output_and_no_key(
    tmp_path: Path, emulator: Any, monkeypatch: Any
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    emulator.tokens_per_second = 400  # a real stream: ~0.1 s, several display updates
    # The kernel is a subprocess: it inherits this environment (ledger already at tmp_path).
    monkeypatch.setenv("PIENTEGER_API_KEY", TEST_KEY)
    monkeypatch.setenv("PIENTEGER_BASE_URL", emulator.url)

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    client = nbclient.NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        client.execute()  # the out-of-range temperature stops the run, as Run All would
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    saved = path.read_text()
    assert TEST_KEY not in saved and TEST_KEY[:-4] not in saved
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells

    # The completion cell: one output (the stream, updated in place to its final form), then the usage line.
    outputs = cells[2].outputs
    assert [o.output_type for o in outputs] == ["display_data", "display_data"], outputs
    final, usage = outputs
    printed = "".join(o.get("text", "") for o in cells[3].outputs if o.output_type == "stream")
    text = ast.literal_eval(printed.splitlines()[0])  # repr() of res.text, printed by the kernel
    assert text and final.data["text/markdown"] == text == final.data["text/plain"]
    info = final.metadata["pienteger"]
    # No temperature: the text is random and may end at a sentence before max_tokens.
    tokens, request_id = printed.splitlines()[1].split()
    assert 0 < int(tokens) <= 40
    assert info["model"] == "text-davinci:003" and info["usage"]["completion_tokens"] == int(tokens)
    assert info["request_id"] == request_id
    assert f"→ {tokens} tokens" in usage.data["text/plain"]

    # Dry run: the request with the key masked, and nothing sent for it.
    shown = cells[4].outputs[0].data["text/plain"]
    assert '"prompt": "About lighthouses"' in shown and "X-Api-Key: ****" in shown
    assert len([r for r in emulator.requests if r.path.endswith("/completions")]) == 1

    # The failure: one line, no traceback frames; the next cell never ran. An option mistake is a
    # UsageError, which IPython shows as one line on stderr (as argparse's own mistakes are).
    shown_lines = [line for o in cells[6].outputs for line in
                   (o.traceback if o.output_type == "error" else o.get("text", "").splitlines()) if line.strip()]
    assert len(shown_lines) == 1 and "temperature" in shown_lines[0], shown_lines
    assert "bad option" in shown_lines[0]
    assert cells[7].outputs == []
    json.dumps(nb)  # a valid notebook
