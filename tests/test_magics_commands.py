"""%pienteger SUBCOMMAND in a real InteractiveShell: models, config, login, check, emulator,
usage, form, help. Every captured output is scanned for the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY
from IPython.utils.capture import CapturedIO, capture_output

from pienteger_nb import config


class Run:
    def __init__(self, res: Any, cap: CapturedIO):
        self.res, self.cap = res, cap

    @property
    def lines(self) -> list[str]:
        return [line for line in (self.cap.stdout + self.cap.stderr).splitlines() if line.strip()]

    def data(self, mime: str) -> list[Any]:
        return [o.data[mime] for o in self.cap.outputs if mime in o.data]


def run(ip: Any, source: str) -> Run:
    with capture_output() as cap:
        res = ip.run_cell(source, silent=True)
    outputs = json.dumps([(o.data, o.metadata) for o in cap.outputs], default=str)
    blob = cap.stdout + cap.stderr + outputs + repr(res.error_in_exec)
    assert TEST_KEY not in blob and TEST_KEY[:-4] not in blob
    return Run(res, cap)


def test_models_is_a_table(ip: Any, magics: Any, env_emulator: Any) -> None:
    r = run(ip, "%pienteger models")
    assert r.res.success, r.lines
    (html,) = r.data("text/html")
    assert html.startswith("<table>") and "text-davinci-003" in html and "text-ada-001" in html
    (plain,) = r.data("text/plain")
    assert "default" in next(line for line in plain.splitlines() if line.startswith("text-davinci-003 "))
    assert "| text-ada-001 |" in r.data("text/markdown")[0]
    assert env_emulator.requests[-1].path.endswith("/models")


def test_models_failing_is_one_line(ip: Any, magics: Any, env_emulator: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PIENTEGER_API_KEY", "pk-wrong-000000000000000000")
    r = run(ip, "%pienteger models")
    assert r.res.success is False
    assert len(r.lines) == 1 and "model list failed: HTTP 401" in r.lines[0]


def test_config_shows_every_setting_masked_with_its_origin(ip: Any, magics: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PIENTEGER_API_KEY", TEST_KEY)
    monkeypatch.setenv("PIENTEGER_MODEL", "text-curie-001")
    r = run(ip, "%pienteger config")
    rows = {line.split()[0]: line.split() for line in r.data("text/plain")[0].splitlines()[1:]}
    assert rows["api_key"][1:] == [f"****{TEST_KEY[-4:]}", "environment"]
    assert rows["model"][1:] == ["text-curie-001", "environment"]
    assert rows["format"][1:] == ["markdown", "default"]
    assert set(config.FIELDS) <= set(rows)


def test_config_sets_and_clears_kernel_settings(ip: Any, magics: Any) -> None:
    r = run(ip, "%pienteger config model=text-ada-001 max_tokens=32 debug=yes")
    assert r.res.success
    assert config.lookup("model") == ("text-ada-001", "kernel")
    assert config.get("max_tokens") == 32 and config.get("debug") is True
    shown = r.data("text/plain")[0]
    assert "text-ada-001" in shown and "kernel" in shown and "base_url" not in shown
    run(ip, "%pienteger config model=")
    assert config.lookup("model")[1] == "default"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (f"api_key={TEST_KEY}", "the key is not a config setting"),
        (f"key={TEST_KEY}", "the key is not a config setting"),
        ("modle=text-ada-001", "did you mean model?"),
        ("temperature=hot", "temperature"),
        ("format=xml", "must be one of"),
        ("base_url=ftp://x", "not an http(s) URL"),
        ("model", "expected name=value"),
        ("temperature=5", "temperature must be a number from 0 to 2"),
        ("temperature=nan", "temperature must be a number from 0 to 2"),
        ("max_tokens=-3", "max_tokens must be an integer >= 0"),
        ("timeout=0", "timeout must be a number of seconds > 0"),
        ("timeout=inf", "timeout must be a number of seconds > 0"),
        ("max_retries=-1", "max_retries must be an integer >= 0"),
        ("model=text-ada-001 temperature=9", "temperature must be"),
    ],
)
def test_config_mistakes_are_one_line(ip: Any, magics: Any, line: str, fragment: str) -> None:
    r = run(ip, f"%pienteger config {line}")
    assert r.res.success is False
    assert len(r.lines) == 1 and fragment in r.lines[0], r.lines
    assert config.api_key() == (None, "missing")
    assert all(config.lookup(name)[1] != "kernel" for name in config.FIELDS)  # nothing was set


@pytest.mark.parametrize("command", ["check", "models"])
def test_settings_a_client_refuses_are_one_line(
    ip: Any, magics: Any, env_emulator: Any, monkeypatch: Any, command: str
) -> None:
    monkeypatch.setenv("PIENTEGER_BASE_URL", "notaurl")  # the environment is read, not checked, at set-up
    r = run(ip, f"%pienteger {command}")
    assert r.res.success is False
    assert len(r.lines) == 1 and "not an http(s) URL" in r.lines[0], r.lines


def test_login_keeps_the_key_in_the_kernel_without_echo(
    ip: Any, magics: Any, emulator: Any, monkeypatch: Any
) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return f"  {TEST_KEY}\n"

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    monkeypatch.setenv("PIENTEGER_BASE_URL", emulator.url)
    r = run(ip, "%pienteger login")
    assert r.res.success and prompts and "hidden" in prompts[0]
    assert f"****{TEST_KEY[-4:]}" in r.cap.stdout
    assert config.api_key() == (config.Secret(TEST_KEY), "kernel")
    assert run(ip, "%pienteger check").res.success


def test_login_with_nothing_entered_changes_nothing(ip: Any, magics: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "")
    r = run(ip, "%pienteger login")
    assert r.res.success is False and "no key entered" in r.lines[0]
    assert config.api_key() == (None, "missing")


@pytest.mark.parametrize("error", ["StdinNotImplementedError", "KeyboardInterrupt", "EOFError"])
def test_login_without_an_answer_is_one_line(ip: Any, magics: Any, monkeypatch: Any, error: str) -> None:
    from IPython.core.error import StdinNotImplementedError

    exc = {"StdinNotImplementedError": StdinNotImplementedError("no input requests here"),
           "KeyboardInterrupt": KeyboardInterrupt("Interrupted by user"), "EOFError": EOFError()}[error]

    def no_answer(prompt: str = "") -> str:  # nbclient and jupyter execute: allow_stdin is False
        raise exc

    monkeypatch.setattr("getpass.getpass", no_answer)
    r = run(ip, "%pienteger login")
    assert r.res.success is False
    assert len(r.lines) == 1 and "no key entered" in r.lines[0], r.lines
    assert config.api_key() == (None, "missing")


def test_check_ok_gives_a_verdict(ip: Any, magics: Any, env_emulator: Any) -> None:
    r = run(ip, "%pienteger check")
    assert r.res.success
    (line,) = r.lines
    assert line.startswith("check OK:") and env_emulator.url in line and "6 models" in line
    assert f"****{TEST_KEY[-4:]}" in line


@pytest.mark.parametrize("case", ["wrong-key", "no-key", "refused"])
def test_check_failing_says_what_is_wrong(
    ip: Any, magics: Any, env_emulator: Any, monkeypatch: Any, case: str
) -> None:
    if case == "wrong-key":
        monkeypatch.setenv("PIENTEGER_API_KEY", "pk-wrong-000000000000000000")
        fragment = "HTTP 401"
    elif case == "no-key":
        monkeypatch.delenv("PIENTEGER_API_KEY")
        fragment = "no Pienteger API key"
    else:
        config.set_kernel("max_retries", 0)
        env_emulator.stop()
        fragment = "could not reach the service"
    r = run(ip, "%pienteger check")
    assert r.res.success is False
    assert len(r.lines) == 1 and r.lines[0].startswith("check FAILED") and fragment in r.lines[0], r.lines


def test_emulator_start_points_the_kernel_at_it_and_stop_restores(ip: Any, magics: Any) -> None:
    config.set_kernel("base_url", "https://example.invalid/oaiv1")
    r = run(ip, "%pienteger emulator start --tokens-per-second 5000")
    assert r.res.success, r.lines
    url = magics.emulator.url
    assert url in r.cap.stdout
    assert config.get("base_url") == url and config.api_key()[1] == "kernel"
    assert run(ip, "%%pienteger --max-tokens 3\nx").res.success
    assert magics.emulator.requests[-1].body["max_tokens"] == 3
    assert "running" in run(ip, "%pienteger emulator start").cap.stdout
    assert url in run(ip, "%pienteger emulator status").cap.stdout
    r = run(ip, "%pienteger emulator stop")
    assert "stopped" in r.cap.stdout and magics.emulator is None
    assert config.get("base_url") == "https://example.invalid/oaiv1"
    assert config.api_key() == (None, "missing")
    assert "no emulator" in run(ip, "%pienteger emulator stop").cap.stdout


def test_emulator_stop_keeps_what_was_set_while_it_ran(ip: Any, magics: Any, monkeypatch: Any) -> None:
    assert run(ip, "%pienteger emulator start").res.success
    monkeypatch.setattr("getpass.getpass", lambda prompt="": TEST_KEY)
    assert run(ip, "%pienteger login").res.success  # the user's own key, after the start
    assert run(ip, "%pienteger config base_url=https://example.invalid/oaiv1").res.success
    assert run(ip, "%pienteger emulator stop").res.success
    assert config.api_key() == (config.Secret(TEST_KEY), "kernel")
    assert config.lookup("base_url") == ("https://example.invalid/oaiv1", "kernel")


def test_emulator_needs_an_action(ip: Any, magics: Any) -> None:
    r = run(ip, "%pienteger emulator restart")
    assert r.res.success is False and len(r.lines) == 1 and "invalid choice" in r.lines[0]


def test_usage_summary_export_and_mistakes(ip: Any, magics: Any, env_emulator: Any, tmp_path: Path) -> None:
    assert "no calls recorded" in run(ip, "%pienteger usage").cap.stdout
    for _ in range(2):
        assert run(ip, "%%pienteger --max-tokens 3 -m text-ada-001\nx").res.success
    r = run(ip, "%pienteger usage --by source")
    assert r.res.success, r.lines
    assert any("magic" in html for html in r.data("text/html"))
    r = run(ip, "%pienteger usage --since 1h")
    assert any("text-ada-001" in html for html in r.data("text/html"))
    r = run(ip, "%pienteger usage --by user")  # every grouping usage_summary takes, also here
    assert r.res.success, r.lines
    target = tmp_path / "rows.csv"
    r = run(ip, f'%pienteger usage --export "{target}"')
    assert r.res.success and target.exists() and str(target) in r.cap.stdout
    assert target.read_text().count("text-ada-001") == 2
    for bad, fragment in (("--by colour", "invalid choice"), ("--since someday", "usage")):
        r = run(ip, f"%pienteger usage {bad}")
        assert r.res.success is False and len(r.lines) == 1 and fragment in r.lines[0], r.lines


def test_usage_export_to_parquet_without_pyarrow_is_one_line(
    ip: Any, magics: Any, env_emulator: Any, tmp_path: Path
) -> None:
    assert run(ip, "%%pienteger --max-tokens 3\nx").res.success
    target = tmp_path / "rows.parquet"
    r = run(ip, f'%pienteger usage --export "{target}"')
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert r.res.success is False and len(r.lines) == 1 and "pyarrow" in r.lines[0], r.lines
        assert not target.exists()
    else:
        assert r.res.success and target.exists()


def test_usage_plot(ip: Any, magics: Any, env_emulator: Any) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    assert run(ip, "%%pienteger --max-tokens 3\nx").res.success
    r = run(ip, "%pienteger usage --by day --plot")
    assert r.res.success, r.lines


def test_form_shows_the_widget(ip: Any, magics: Any, env_emulator: Any) -> None:
    pytest.importorskip("ipywidgets")
    r = run(ip, "%pienteger form")
    assert r.res.success, r.lines
    assert r.data("application/vnd.jupyter.widget-view+json") or "PromptForm" in r.cap.stdout


@pytest.mark.parametrize(
    ("line", "fragment"), [("modles", "did you mean models?"), ("cheque", "did you mean check?")]
)
def test_unknown_subcommand_suggests(ip: Any, magics: Any, line: str, fragment: str) -> None:
    r = run(ip, f"%pienteger {line}")
    assert r.res.success is False
    assert len(r.lines) == 1 and fragment in r.lines[0]


def test_bare_line_magic_is_help(ip: Any, magics: Any) -> None:
    r = run(ip, "%pienteger")
    assert r.res.success and "subcommands" in r.cap.stdout
