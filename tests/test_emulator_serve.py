"""``run_serve`` (behind ``pienteger-nb serve``) in a real child process: prints the URL, serves, stops on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import requests
from conftest import TEST_KEY

from pienteger_nb.emulator import Emulator

SERVE = ("import argparse, sys\n"
         "from pienteger_nb.emulator import add_serve_arguments, run_serve\n"
         "p = argparse.ArgumentParser()\n"
         "add_serve_arguments(p)\n"
         "sys.exit(run_serve(p.parse_args(sys.argv[1:])))\n")


def serve(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SERVE, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def banner(proc: subprocess.Popen) -> list[str]:
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            return lines
    pytest.fail(f"serve ended early: {lines} {proc.stderr.read() if proc.stderr else ''}")


def stop(proc: subprocess.Popen) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


def test_serve_prints_how_to_connect_serves_and_exits_0_on_ctrl_c():
    proc = serve("--port", "0", "--rpm", "1", "--latency", "0")
    try:
        lines = banner(proc)
        url = lines[0].rsplit(" ", 1)[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/oaiv1")
        assert f"  export PIENTEGER_BASE_URL={url}" in lines
        assert "  export PIENTEGER_API_KEY=emulator-key" in lines
        headers = {"X-Api-Key": "emulator-key"}
        body = {"model": "text-ada-001", "max_tokens": 2}
        assert requests.post(url + "/completions", json=body, headers=headers, timeout=10).status_code == 200
        assert requests.post(url + "/completions", json=body, headers=headers, timeout=10).status_code == 429
    finally:
        code, out, err = stop(proc)
    assert code == 0, err
    assert "POST /oaiv1/completions 200" in out and "POST /oaiv1/completions 429" in out
    assert out.rstrip().endswith("Pienteger emulator stopped.")


def test_serve_never_prints_a_key_given_on_the_command_line():
    proc = serve("--port", "0", "--api-key", TEST_KEY, "--getmodels-only", "--quiet")
    try:
        lines = banner(proc)
        url = lines[0].rsplit(" ", 1)[1]
        headers = {"X-Api-Key": TEST_KEY}
        assert requests.get(url + "/models", headers=headers, timeout=10).status_code == 404
        assert requests.get(url + "/getmodels", headers=headers, timeout=10).status_code == 200
    finally:
        code, out, err = stop(proc)
    assert code == 0
    assert TEST_KEY not in out + err + "\n".join(lines) and TEST_KEY[-8:] not in out + "\n".join(lines)
    assert "GET /oaiv1/models" not in out  # --quiet


def test_serve_on_a_busy_port_says_what_to_do():
    with Emulator(TEST_KEY) as emu:
        proc = serve("--port", str(emu.port))
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{emu.port}" in err and "--port" in err


@pytest.mark.parametrize(("args", "fragment"), [
    (["--port", "99999"], "--port: must be a whole number from 0 to 65535"),
    (["--port", "abc"], "--port: must be a whole number from 0 to 65535"),
    (["--rpm", "0"], "--rpm: must be a whole number > 0"),
    (["--latency", "-1"], "--latency: must be >= 0"),
])
def test_serve_refuses_bad_options_in_one_line(capsys, args, fragment):
    from pienteger_nb.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
