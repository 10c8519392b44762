"""``pienteger-nb demo``: the quickstart run end to end, its failures, and ``--lab``."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import TEST_KEY

from pienteger_nb import demo, examples
from pienteger_nb.cli import main

DEMO_KEY = "pk-demo-test-9f8e7d6c5b4a3210SECRET"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment (PIENTEGER_* cleared by the autouse fixture) plus private Jupyter dirs."""
    home = tmp_path / "jupyter-home"
    return dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        PYTHONUNBUFFERED="1",
        **extra,
    )


@pytest.mark.notebook
def test_demo_runs_the_quickstart_and_writes_its_files(tmp_path):
    out = tmp_path / "demo-out"
    # A key in the user's environment must not leak into the demo (it uses the emulator's own).
    env = _env(tmp_path, PIENTEGER_API_KEY=TEST_KEY, PIENTEGER_MODEL="not-a-model")
    done = subprocess.run(
        [sys.executable, "-m", "pienteger_nb.cli", "demo", "--out", str(out), "--api-key", DEMO_KEY],
        env=env, capture_output=True, text=True, timeout=110, cwd=tmp_path, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    notebook, html, ledger = out / "quickstart.ipynb", out / "quickstart.html", out / "usage.sqlite"
    for path in (notebook, html, ledger):
        assert path.is_file() and path.stat().st_size > 0, path
        assert str(path) in done.stdout
    for secret in (DEMO_KEY, TEST_KEY):
        assert secret not in done.stdout + done.stderr
        for path in out.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    nb = nbformat.read(notebook, as_version=4)
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
    assert "Calls this run:" in done.stdout and "text-davinci-003" in done.stdout
    # The user's own ledger (the autouse fixture's PIENTEGER_USAGE_DB) was not touched.
    assert not Path(os.environ["PIENTEGER_USAGE_DB"]).exists()


def _notebook_with(tmp_path: Path, *sources: str) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "quickstart.ipynb")
    return folder


@pytest.mark.notebook
def test_a_failing_cell_is_one_line_naming_the_cell(tmp_path, capsys):
    folder = _notebook_with(tmp_path, "x = 1", "import os\nraise ValueError('broken on purpose')", "y = 2")
    out = tmp_path / "out"
    assert main(["demo", "--notebooks", str(folder), "--out", str(out), "--timeout", "60"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "cell 2" in err and "import os" in err and "ValueError: broken on purpose" in err
    # The notebook as far as it ran is kept, for a look at what happened.
    assert (out / "quickstart.ipynb").is_file()


def test_no_notebooks_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--notebooks", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "quickstart.ipynb" in err and "--notebooks" in err and 'pip install "pienteger_nb[demo]"' in err


def test_an_unusable_out_folder_or_ledger_is_one_line_before_anything_runs(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    assert main(["demo", "--out", str(a_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "--out" in err and str(a_file) in err and "not a folder" in err
    # A ledger that cannot be opened fails at once, not at the notebook's last cell.
    assert main(["demo", "--out", str(tmp_path / "o"), "--db", str(a_file / "usage.sqlite")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "--db" in err and "cannot open the usage ledger" in err
    assert not (tmp_path / "o" / "quickstart.ipynb").exists()


def test_missing_demo_dependency_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "nbclient", None)  # find_spec reports it as not installed
    assert main(["demo", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert "nbclient" in err and err.endswith('pip install "pienteger_nb[demo]"')
    assert not (tmp_path / "o").exists()


def test_the_bundled_quickstart_is_found_inside_the_package():
    folder = demo.find_notebooks()
    assert (folder / "quickstart.ipynb").is_file()
    assert folder == Path(demo.__file__).resolve().parent / "examples"
    assert examples.names()[0] == "quickstart.ipynb"
    assert {"widgets.ipynb", "usage-analysis.ipynb", "batch.ipynb"} <= set(examples.names())


def test_the_lab_copy_keeps_what_the_user_edited(tmp_path, capsys):
    workdir = tmp_path / "work"
    assert demo.copy_for_lab(examples.folder(), workdir) == workdir
    assert f"{len(examples.names())} copied" in capsys.readouterr().out
    edited = workdir / "quickstart.ipynb"
    edited.write_text("{}")  # the user's own edit, saved from Lab
    (workdir / "batch.ipynb").unlink()
    demo.copy_for_lab(examples.folder(), workdir)
    out = capsys.readouterr().out
    assert "1 copied" in out and f"{len(examples.names()) - 1} kept" in out
    assert edited.read_text() == "{}" and (workdir / "batch.ipynb").is_file()


def test_the_summary_says_which_calls_it_counts(tmp_path):
    import datetime as dt

    from pienteger_nb.ledger.store import UsageLog
    from pienteger_nb.types import CallRecord

    db = tmp_path / "u.sqlite"
    log = UsageLog(str(db))
    first = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    later = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    for when in (first, first, later):
        log.record(CallRecord(time=when, source="magic", model="text-davinci-003", status="ok"))
    log.close()
    lines = demo.ledger_summary(db, since=later)
    assert lines[0].startswith("Calls this run: 1 (1 ok)")
    assert "2 calls from earlier demo runs" in lines[-1] and "all 3" in lines[-1]
    assert not any("earlier" in line for line in demo.ledger_summary(db, since=first))


def test_kernel_env_replaces_the_users_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("PIENTEGER_API_KEY", TEST_KEY)
    monkeypatch.setenv("PIENTEGER_MODEL", "text-ada-001")
    env = demo.kernel_env(url="http://127.0.0.1:1/oaiv1", api_key="k-demo", db=tmp_path / "u.sqlite")
    assert {k: v for k, v in env.items() if k.startswith("PIENTEGER_")} == {
        "PIENTEGER_API_KEY": "k-demo",
        "PIENTEGER_BASE_URL": "http://127.0.0.1:1/oaiv1",
        "PIENTEGER_USAGE_DB": str(tmp_path / "u.sqlite"),
    }


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The process's stdout lines, read by a thread (None at the end), so no read can hang the test."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


@pytest.mark.notebook
def test_demo_lab_serves_the_notebooks_until_interrupted(tmp_path):
    out = tmp_path / "lab-out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pienteger_nb.cli", "demo", "--lab", "--out", str(out), "--api-key", DEMO_KEY],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )
    lines = _lines(proc)
    seen: list[str] = []
    try:
        urls: dict[str, str] = {}
        while "JupyterLab" not in urls:
            line = lines.get(timeout=90)
            assert line is not None, "".join(seen)
            seen.append(line)
            if ":" in line and line.split(":", 1)[0] in ("Emulator", "JupyterLab"):
                urls[line.split(":", 1)[0]] = line.split(":", 1)[1].split()[0]
        # Lab runs on a copy under --out, never on the installed originals.
        workdir = out / "notebooks"
        assert f"Notebooks:  {workdir}" in "".join(seen)
        assert {p.name for p in workdir.glob("*.ipynb")} == set(examples.names())
        lab = urls["JupyterLab"]
        token = lab.split("token=")[1]
        root = lab.split("/lab?")[0]
        status, body = _get(f"{root}/api/contents?token={token}")
        names = {item["name"] for item in json.loads(body)["content"]}
        assert {"quickstart.ipynb", "widgets.ipynb", "usage-analysis.ipynb", "batch.ipynb"} <= names
        # The emulator runs alongside, with the key the kernels get.
        status, body = _get(f"{urls['Emulator']}/models", {"X-Api-Key": DEMO_KEY})
        assert status == 200 and b"text-davinci-003" in body
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        with pytest.raises(OSError):
            _get(f"{root}/api/status?token={token}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    rest = []
    while (line := lines.get(timeout=10)) is not None:
        rest.append(line)
    output = "".join(seen + rest)
    assert DEMO_KEY not in output
    assert DEMO_KEY.encode() not in (out / "jupyterlab.log").read_bytes()
