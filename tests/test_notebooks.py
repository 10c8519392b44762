"""Every bundled notebook (pienteger_nb/examples/) runs top to bottom in a fresh kernel against the emulator.

One kernel per notebook (kernel start-up is the cost). The executed notebook is written to
disk and read back, exported to HTML, and both are scanned for the key; the usage ledger the
kernel wrote (the autouse fixture's, under tmp_path) is checked for the calls each notebook made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
nbconvert = pytest.importorskip("nbconvert")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "pienteger_nb" / "examples"
ALL = ["quickstart.ipynb", "widgets.ipynb", "usage-analysis.ipynb", "batch.ipynb", "compare.ipynb"]

pytestmark = pytest.mark.notebook


def _run(name: str, tmp_path: Path, *, extra: str | None = None) -> tuple[Any, str, str]:
    """Execute pienteger_nb/examples/NAME in a fresh kernel (environment: this process's, as the test set it).

    ``extra`` is a last cell run in the same kernel and removed before saving (a test's probe).
    Returns the notebook as saved and read back, its file text and its HTML.
    """
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    if extra is not None:
        nb.cells.append(nbformat.v4.new_code_cell(extra))
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    if extra is not None:
        probe = nb.cells.pop()
        assert not any(o.output_type == "error" for o in probe.outputs), probe.outputs
    path = tmp_path / name
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)
    html, _ = nbconvert.HTMLExporter().from_notebook_node(saved)
    return saved, path.read_text(encoding="utf-8"), html


def _text(cell: Any) -> str:
    """Everything a cell showed, as text (streams, plain text and markdown of displays, errors)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
        else:
            for mime in ("text/plain", "text/markdown", "text/html"):
                if mime in out.get("data", {}):
                    parts.append(str(out.data[mime]))
    return "".join(parts)


def _cell(nb: Any, startswith: str) -> Any:
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(startswith))


def _assert_only_tagged_errors(nb: Any) -> None:
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "raises-exception" in cell.metadata.get("tags", []):
            assert len(errors) == 1, f"expected an error from:\n{cell.source}"
        else:
            assert not errors, f"cell failed:\n{cell.source}\n{errors}"


def _ledger() -> Any:
    from pienteger_nb.ledger.default import default_log

    return default_log().frame()


def test_notebooks_are_saved_without_outputs():
    for name in ALL:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: {cell.source[:40]}"
        assert "widgets" not in nb.metadata, name


def test_quickstart_without_a_key_starts_the_emulator(tmp_path):
    # No PIENTEGER_API_KEY (the autouse fixture cleared it): the notebook's own branch starts the
    # bundled emulator. The probe cell saves the key it generated so the test can look for it.
    keyfile = tmp_path / "emulator-key.txt"
    probe = (
        "from pienteger_nb import config as _config\n"
        f"_ = open({str(keyfile)!r}, 'w').write(_config.api_key()[0].get())"
    )
    nb, text, html = _run("quickstart.ipynb", tmp_path, extra=probe)
    key = keyfile.read_text()
    assert len(key) >= 12
    assert key not in text and key not in html
    _assert_only_tagged_errors(nb)

    streamed = _text(_cell(nb, "%%pienteger\n"))
    assert streamed.strip() and "emulator" in streamed  # the usage line says where the prose came from
    assert "unrelated to the prompt" in nb.cells[0].source
    # The --stop example does what its text says, against the emulator too: a stop sequence ends it.
    stopped = _cell(nb, "%%pienteger -m text-curie-001")
    assert "--stop" in stopped.source and "stopped at max_tokens" not in _text(stopped)
    assert "'stop'" in _text(_cell(nb, "one_sentence.finish_reason"))
    printed = _text(_cell(nb, "print(result.text"))
    assert "stop" in printed or "length" in printed
    dry = _text(_cell(nb, "%%pienteger --dry-run"))
    assert "text-ada-001" in dry and "rate limits" in dry  # the request, with {topic} filled in
    error = _text(_cell(nb, "%%pienteger -m no-such-model"))
    assert "404" in error or "no-such-model" in error
    assert "Traceback" not in error
    assert "text-davinci-003" in _text(_cell(nb, "%pienteger usage"))
    # Prices set: the usage lines say what each call cost; the same cell run twice is replayed.
    assert "text-curie-001" in _text(_cell(nb, "import pienteger_nb\n\npienteger_nb.set_prices"))
    assert " · $" in streamed  # the usage line's cost
    twice = [_text(c) for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%pienteger -t 0 --max")]
    assert len(twice) == 2
    assert "cached" not in twice[0] and "$" in twice[0]
    assert "cached" in twice[1] and "$" not in twice[1].splitlines()[-1]

    ledger = _ledger()
    assert set(ledger["source"].astype(str)) == {"magic"}
    assert (ledger["status"].astype(str) == "error").sum() == 1  # the unknown model; the dry run is not a call
    assert (ledger["status"].astype(str) == "ok").sum() == 6
    assert ledger["cached"].sum() == 1
    assert ledger.loc[ledger["cached"], "cost"].tolist() == [0.0]
    ok = ledger[(ledger["status"].astype(str) == "ok") & ~ledger["cached"]]
    assert ok["cost"].notna().all() and (ok["cost"] > 0).all()  # every model it used is priced


def test_widgets_notebook_without_a_key_starts_a_slow_emulator(tmp_path):
    probe = ("ip = get_ipython()\nemu = ip.magics_manager.registry['PientegerMagics'].emulator\n"
             "assert emu is not None and emu.tokens_per_second == 5, emu")
    nb = _run("widgets.ipynb", tmp_path, extra=probe)[0]
    _assert_only_tagged_errors(nb)


def test_widgets_notebook(env_emulator, tmp_path):
    nb, text, html = _run("widgets.ipynb", tmp_path)
    assert TEST_KEY not in text and TEST_KEY not in html
    _assert_only_tagged_errors(nb)
    assert _text(_cell(nb, "form.prompt.value")).strip()
    assert "application/vnd.jupyter.widget-state+json" in json.dumps(nb.metadata.get("widgets", {}))
    ledger = _ledger()
    assert list(ledger["source"].astype(str)) == ["form"]
    assert list(ledger["status"].astype(str)) == ["ok"]
    assert env_emulator.requests[-1].body["max_tokens"] == 20


def test_usage_analysis_notebook(env_emulator, tmp_path, monkeypatch):
    # What Jupyter's server sets for a kernel it starts for a notebook: the ledger's notebook column.
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "usage-analysis.ipynb"))
    nb, text, html = _run("usage-analysis.ipynb", tmp_path)
    assert TEST_KEY not in text and TEST_KEY not in html
    _assert_only_tagged_errors(nb)
    assert "no-such-model" in _text(_cell(nb, "failures ="))
    assert "cost" in _text(_cell(nb, "prices ="))
    assert "text-ada-001" in _text(_cell(nb, 'usage(since="1h"'))
    plot = _cell(nb, "try:\n    import matplotlib")
    assert any("image/png" in o.get("data", {}) for o in plot.outputs), "the plot is missing"
    ledger = _ledger()
    assert len(ledger) == 7
    assert (ledger["status"].astype(str) == "error").sum() == 1
    ok = ledger[ledger["status"].astype(str) == "ok"]
    assert ok["cost"].notna().all() and (ok["cost"] > 0).all()  # recorded with the prices set first
    assert set(ledger["notebook"]) == {str(tmp_path / "usage-analysis.ipynb")}
    assert ledger["execution_count"].nunique() == 2  # the calls were made in two cells
    assert "usage-analysis.ipynb" in _text(_cell(nb, 'usage_summary(by="notebook")'))
    by_cell = _text(_cell(nb, 'usage_summary(by="cell")'))
    assert all(str(n) in by_cell for n in ledger["execution_count"].unique())
    assert "cost" in _text(_cell(nb, 'usage_summary(by="day")'))


def test_batch_notebook(env_emulator, tmp_path):
    # Each answer takes 0.3 s, so the budget cut (on_row, in the calling thread) comes long before
    # the one-at-a-time batch asks to start its third row, however busy the machine.
    env_emulator.latency = 0.3
    nb, text, html = _run("batch.ipynb", tmp_path)
    assert TEST_KEY not in text and TEST_KEY not in html
    _assert_only_tagged_errors(nb)
    assert "at most $" in _text(_cell(nb, "template ="))  # the estimate, before the run
    assert "summary" in _text(_cell(nb, "summaries = reviews"))
    ledger = _ledger()
    assert "review is NA in this row" in _text(_cell(nb, "summaries.loc[6, ["))
    assert "6 prompts" in _text(_cell(nb, "words =")) and "at most $" in _text(_cell(nb, "words ="))
    assert "would fit" in _text(_cell(nb, "pienteger_nb.set_budget(estimate"))
    stopped = _text(_cell(nb, "def budget_cut"))
    assert "skipped" in stopped and "stopped by the budget" in stopped
    assert "6 of 6 rows ok" in _text(_cell(nb, "pienteger_nb.set_budget(1.00"))
    # 6 reviews, the 7th only once its text is there (resume: one call), 3 questions, then the
    # 6 translations: refused up front (none sent), stopped after 1 or 2, the rest on resume.
    assert (ledger["source"].astype(str) == "batch").sum() == 16
    assert set(ledger["status"].astype(str)) == {"ok"}
    assert ledger.loc[ledger["model"].astype(str) == "text-davinci-003", "cost"].gt(0).all()
    bodies = [r.body for r in env_emulator.requests if r.path.endswith("/completions")]
    assert any("kettle" in str(b.get("prompt")) for b in bodies)


def test_compare_notebook(env_emulator, tmp_path):
    nb, text, html = _run("compare.ipynb", tmp_path)
    assert TEST_KEY not in text and TEST_KEY not in html
    _assert_only_tagged_errors(nb)
    table = _cell(nb, "%%pienteger --compare")
    assert "pienteger-compare" in _text(table)
    assert _text(_cell(nb, "%pienteger explain")).strip()  # the answer, as Markdown
    ledger = _ledger()
    sources = ledger["source"].astype(str)
    assert (sources == "compare").sum() == 6 + 4
    bodies = [r.body for r in env_emulator.requests if r.path.endswith("/completions")]
    assert any("KeyError" in str(b.get("prompt")) and "prices" in str(b.get("prompt")) for b in bodies)
    assert set(ledger["status"].astype(str)) == {"ok"}
