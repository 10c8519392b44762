"""Installed as users install it: build the wheel, install it into a fresh venv outside the
checkout, and run ``pienteger-nb demo`` and ``pienteger-nb notebooks`` from there.

The build fetches setuptools from PyPI (build isolation): without a network the test skips,
unless CI=true, where it fails. The fresh venv gets the wheel itself (``--no-deps``) and sees
this interpreter's installed dependencies through a ``.pth`` file, so nothing of the checkout
(neither the editable install nor PYTHONPATH) can stand in for the wheel. ``.ci/run`` also
installs the wheel with its real dependencies from PyPI.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.notebook, pytest.mark.slow, pytest.mark.timeout(600)]


def _source_tree(dest: Path) -> Path:
    """A copy of the files git tracks (else the tree minus build output), so the build leaves the checkout alone."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    names = [n for n in listed.stdout.decode().split("\0") if n] if listed.returncode == 0 else []
    if not names:
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                 and not {"build", "dist", ".git", "__pycache__", ".ci-venv"} & set(p.relative_to(ROOT).parts)]
    for name in names:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment a user's shell would have: no PYTHONPATH, no PIENTEGER_*, private Jupyter dirs."""
    drop = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "PIP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and not k.startswith("PIENTEGER_")}
    home = tmp_path / "jupyter-home"
    env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    return env


def _build_wheel(tmp_path: Path, env: dict[str, str]) -> Path:
    pytest.importorskip("build", reason='the test extra has it: pip install -e ".[test]"')
    src = _source_tree(tmp_path / "src")
    dist = tmp_path / "dist"
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    offline = ("Could not find a version" in output or "NewConnectionError" in output)
    if done.returncode != 0 and offline:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the wheel cannot be built (no PyPI?):\n{output[-2000:]}", pytrace=False)
        pytest.skip("building the wheel needs PyPI (setuptools for the isolated build)")
    assert done.returncode == 0, output[-4000:]
    warnings = [line for line in output.splitlines() if "warning" in line.lower() or "deprecat" in line.lower()]
    assert warnings == [], "python -m build warned:\n" + "\n".join(warnings)
    wheels = list(dist.glob("pienteger_nb-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    return wheels[0]


def test_the_wheel_installs_and_the_demo_runs_outside_the_checkout(tmp_path):
    env = _clean_env(tmp_path)
    wheel = _build_wheel(tmp_path, env)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert {"pienteger_nb/examples/quickstart.ipynb", "pienteger_nb/examples/widgets.ipynb"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)

    # A fresh venv far from the checkout; its dependencies come from this interpreter's site-packages.
    venv = tmp_path / "user-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "deps-from-test-runner.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # Jupyter's data (nbconvert's templates) sits beside those dependencies, not in the new venv.
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    "--disable-pip-version-check",
                    str(wheel)], env=env, check=True, timeout=300)

    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()

    def run(*command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=env, cwd=elsewhere, capture_output=True, text=True,
                              timeout=timeout, check=False)

    where = run(str(python), "-c", "import pienteger_nb; print(pienteger_nb.__file__)")
    assert where.stdout.strip().startswith(purelib), where.stdout + where.stderr

    cli = str(venv / "bin" / "pienteger-nb")
    done = run(cli, "demo", "--out", "demo-out", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Calls this run:" in done.stdout
    assert (elsewhere / "demo-out" / "quickstart.ipynb").is_file()
    assert (elsewhere / "demo-out" / "quickstart.html").is_file()

    copied = run(cli, "notebooks", "mine")
    assert copied.returncode == 0, copied.stderr
    assert {p.name for p in (elsewhere / "mine").glob("*.ipynb")} >= {"quickstart.ipynb", "batch.ipynb"}
    assert not list(ROOT.glob("build")) or (ROOT / "build").stat().st_mtime < wheel.stat().st_mtime
