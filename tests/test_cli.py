"""``pienteger-nb`` argument handling, the ``usage`` subcommand, and the README's two commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import TEST_KEY

from pienteger_nb.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEMO_COMMAND = 'pip install -e ".[demo]" && pienteger-nb demo'
TEST_COMMAND = 'pip install -e ".[test]" && pytest'


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_help_lists_the_subcommands(capsys):
    out = _help(capsys)
    for name in ("demo", "serve", "usage"):
        assert re.search(rf"^\s+{name}\s+\S", out, re.MULTILINE), f"{name} missing from --help:\n{out}"


def test_help_imports_no_heavy_module():
    # `pienteger-nb --help` must stay fast: the subcommands import their code only when they run.
    code = (
        "import sys\nfrom pienteger_nb.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ['pandas', 'nbclient', 'nbconvert', 'IPython', 'ipywidgets', 'pienteger_nb.emulator',"
        " 'pienteger_nb.ledger.store', 'pienteger_nb.ledger.usage_cli', 'pienteger_nb.demo']\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout, done.stdout


def test_no_subcommand_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_unknown_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_demo_help_shows_its_options(capsys):
    out = _help(capsys, "demo")
    for option in ("--out", "--lab", "--db", "--notebooks", "--api-key"):
        assert option in out


def test_serve_help_comes_from_the_emulator(capsys):
    out = _help(capsys, "serve")
    assert "--port" in out


def test_usage_subcommand_shows_the_ledger(env_emulator, capsys):
    from pienteger_nb import Client
    from pienteger_nb.ledger.default import record_call

    Client(on_call=record_call).complete("Say this is a test", model="text-curie-001", max_tokens=5)
    capsys.readouterr()
    assert main(["usage"]) == 0
    captured = capsys.readouterr()
    assert "text-curie-001" in captured.out
    assert TEST_KEY not in captured.out + captured.err


def test_usage_help(capsys):
    out = _help(capsys, "usage")
    assert "usage" in out


# -- the README's two commands ---------------------------------------------------------------


def _readme_commands() -> list[str]:
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not written yet")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", readme.read_text(encoding="utf-8"), re.DOTALL)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            # A trailing "# comment" explains the command; it is not part of it.
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command.startswith("pip install"):
                commands.append(command)
    return commands


def test_readme_shows_the_two_commands_exactly():
    commands = _readme_commands()
    assert DEMO_COMMAND in commands, commands
    assert TEST_COMMAND in commands, commands


def test_ci_runs_the_readme_test_command():
    assert TEST_COMMAND in _readme_commands()
    ci = ROOT / ".ci" / "run"
    if not ci.exists():
        pytest.skip(".ci/run is not written yet")
    lines = [line.strip() for line in ci.read_text(encoding="utf-8").splitlines()]
    assert TEST_COMMAND in [line for line in lines if not line.startswith("#")]


def test_readme_commands_name_real_extras_and_subcommands(capsys):
    commands = _readme_commands()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    for command in (DEMO_COMMAND, TEST_COMMAND):
        assert command in commands
        install, _run = (shlex.split(part) for part in command.split("&&"))
        extra = re.fullmatch(r"\.\[(\w+)\]", install[-1])
        assert extra and extra.group(1) in extras, install
    # The demo extra holds what running notebooks needs.
    demo_extra = " ".join(extras["demo"])
    for package in ("nbclient", "nbconvert", "ipykernel", "jupyterlab"):
        assert package in demo_extra
    # `pienteger-nb demo`: the console script points at this main, and `demo` is its subcommand.
    script, subcommand = shlex.split(DEMO_COMMAND.split("&&")[1])
    assert project["scripts"][script] == "pienteger_nb.cli:main"
    assert "--out" in _help(capsys, subcommand)
    # `pytest` with no arguments collects this directory.
    assert shlex.split(TEST_COMMAND.split("&&")[1]) == ["pytest"]
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"]
    assert Path(__file__).parent.name in testpaths


# -- pienteger-nb notebooks DIR --------------------------------------------------------------


def test_notebooks_copies_the_bundled_notebooks_and_keeps_edits(tmp_path, capsys):
    from pienteger_nb import examples

    dest = tmp_path / "mine"
    assert main(["notebooks", str(dest)]) == 0
    assert sorted(p.name for p in dest.glob("*.ipynb")) == sorted(examples.names())
    assert (dest / "quickstart.ipynb").read_bytes() == (examples.folder() / "quickstart.ipynb").read_bytes()
    assert f"jupyter lab {dest}" in capsys.readouterr().out
    (dest / "quickstart.ipynb").write_text("{}")  # an edit the user saved
    assert main(["notebooks", str(dest)]) == 0
    assert "kept" in capsys.readouterr().out and (dest / "quickstart.ipynb").read_text() == "{}"
    assert main(["notebooks", str(dest), "--force"]) == 0
    assert (dest / "quickstart.ipynb").read_text() != "{}"


def test_notebooks_into_a_file_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert main(["notebooks", str(a_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "not a folder" in err
