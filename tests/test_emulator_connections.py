"""The emulator's connections: an idle timeout, no thread per idle socket, limits that keep serving.

Real loopback sockets; no sleeps: the server closing a socket, or a later client being answered
(accepts are first in, first out), is the signal. Timeouts are set short to keep this fast.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import requests
from conftest import TEST_KEY
from test_emulator_hardening import (
    EMULATOR_DIR,
    JSON_HEAD,
    assert_no_traceback,
    connect,
    error_of,
    exchange,
    parse,
    read_reply,
)

from pienteger_nb.emulator import Emulator


def emulator_threads(emu: Emulator) -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name.startswith("pienteger-emulator") and f":{emu.port}" in t.name]


def open_fds() -> int | None:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room for 1,000 client and 1,000 server sockets in this one process."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096
    if soft >= want:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < 2500:
        pytest.skip(f"the open-file limit ({hard}) is too low for 1,000 sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def fresh_call(emu: Emulator) -> requests.Response:
    return requests.get(emu.url + "/models", headers={"X-Api-Key": TEST_KEY}, timeout=10)


def test_an_idle_connection_is_closed_after_the_idle_timeout(capfd):
    with Emulator(TEST_KEY, idle_timeout=0.2) as emu, connect(emu) as quiet, connect(emu) as served:
        served.sendall(b"GET /oaiv1/models HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + TEST_KEY.encode() + b"\r\n\r\n")
        reply = read_reply(served)  # the answer, then the close once the connection has idled
        assert parse(reply)[0] == 200
        assert read_reply(quiet) == b""  # never sent a byte: closed, not held forever
    assert_no_traceback(capfd)


def test_the_idle_timeout_does_not_cut_a_slow_answer(capfd):
    with Emulator(TEST_KEY, idle_timeout=0.05) as emu:
        resp = requests.post(emu.url + "/completions", headers={"X-Api-Key": TEST_KEY,
                             "X-Emulator-Fault": "stall;after=1;seconds=0.2"}, timeout=10,
                             json={"model": "text-ada-001", "max_tokens": 3, "stream": True})
        assert resp.status_code == 200 and resp.content.rstrip().endswith(b"data: [DONE]")
    assert_no_traceback(capfd)


def test_a_thousand_idle_sockets_hold_no_thread_each_and_do_not_starve_a_fresh_client(many_files, capfd):
    before = open_fds()
    with Emulator(TEST_KEY, max_threads=4) as emu:
        idle = []
        try:
            for _ in range(1000):
                idle.append(connect(emu))
            # Accepts are first in, first out: once a later client is answered, all 1,000 were accepted.
            assert fresh_call(emu).status_code == 200
            assert len(emulator_threads(emu)) <= 4 + 1  # the workers and the one accepting thread
            assert fresh_call(emu).status_code == 200
            # Parked, not dropped: an idle connection still serves a request when it sends one.
            idle[0].sendall(b"GET /oaiv1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            b"X-Api-Key: " + TEST_KEY.encode() + b"\r\n\r\n")
            assert parse(read_reply(idle[0]))[0] == 200
        finally:
            for sock in idle:
                sock.close()
    assert not emulator_threads(emu)
    if before is not None:
        assert open_fds() == before
    assert_no_traceback(capfd)


def test_past_max_connections_the_longest_idle_connection_is_closed(many_files, capfd):
    with Emulator(TEST_KEY, max_connections=50, max_threads=4) as emu:
        idle = []
        try:
            for _ in range(1000):
                idle.append(connect(emu))
            assert fresh_call(emu).status_code == 200
            assert read_reply(idle[0]) == b""  # the oldest were closed to make room
            assert read_reply(idle[900]) == b""
            newest = idle[-1]
            newest.setblocking(False)
            with pytest.raises(BlockingIOError):  # still open, waiting for a request
                newest.recv(1)
        finally:
            for sock in idle:
                sock.close()
    assert_no_traceback(capfd)


def test_pipelined_requests_on_one_connection_are_both_answered():
    # The second request is already buffered when the first is answered: it must be served, not
    # parked waiting for bytes that have arrived.
    get = b"GET /oaiv1/models HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + TEST_KEY.encode() + b"\r\n"
    with Emulator(TEST_KEY) as emu:
        reply = exchange(emu, get + b"\r\n" + get + b"Connection: close\r\n\r\n", end_input=False)
    assert reply.count(b"HTTP/1.1 200 OK") == 2


def test_when_every_connection_is_mid_request_a_newcomer_gets_a_503():
    body = b'{"model": "text-ada-001"}'
    stalled = (b"POST /oaiv1/completions HTTP/1.1\r\nHost: x\r\n" + JSON_HEAD + b"X-Emulator-Fault: stall\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    with Emulator(TEST_KEY, max_connections=2) as emu, connect(emu) as one, connect(emu) as two:
        one.sendall(stalled)
        two.sendall(stalled)
        assert emu.wait_for_requests(2)
        with connect(emu) as three:  # refused as it is accepted, before it sends anything
            status, headers, reply = parse(read_reply(three))
        assert status == 503 and headers["retry-after"] == "1"
        assert error_of(reply)["code"] == "too_many_connections"


def test_stop_closes_parked_and_busy_connections():
    with Emulator(TEST_KEY) as emu:
        parked = connect(emu)
        busy = connect(emu)
        body = b'{"model": "text-ada-001"}'
        busy.sendall(b"POST /oaiv1/completions HTTP/1.1\r\nHost: x\r\n" + JSON_HEAD + b"X-Emulator-Fault: stall\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert emu.wait_for_requests(1)
    with parked, busy:
        assert read_reply(parked) == b"" and read_reply(busy) == b""
    assert not emulator_threads(emu)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"idle_timeout": 0}, "idle_timeout"), ({"idle_timeout": float("nan")}, "idle_timeout"),
    ({"max_threads": 0}, "max_threads"), ({"max_connections": 0}, "max_connections"),
])
def test_connection_settings_are_checked(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Emulator(TEST_KEY, **kwargs)


SERVE = ("import argparse, sys\n"
         "from pienteger_nb.emulator import add_serve_arguments, run_serve\n"
         "p = argparse.ArgumentParser()\n"
         "add_serve_arguments(p)\n"
         "sys.exit(run_serve(p.parse_args(sys.argv[1:])))\n")


def test_serve_takes_an_idle_timeout_and_logs_bad_requests_in_one_line():
    proc = subprocess.Popen([sys.executable, "-c", SERVE, "--port", "0", "--idle-timeout", "0.2",
                             "--max-connections", "100", "--max-threads", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(EMULATOR_DIR.parents[1])})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Pienteger emulator serving at "), first + (proc.stderr.read() if proc.stderr else "")
        port = int(first.rsplit(":", 1)[1].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert read_reply(sock) == b""  # idle: closed after 0.2 s
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"\x1b[2J GARBAGE\r\n\r\n")
            assert parse(read_reply(sock))[0] == 400
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert err == ""
    logged = [line for line in out.splitlines() if " 400 " in line]
    assert len(logged) == 1 and logged[0].isprintable() and "\x1b" not in out


@pytest.mark.parametrize(("args", "fragment"), [
    (["--idle-timeout", "0"], "--idle-timeout: must be a number of seconds > 0"),
    (["--idle-timeout", "nan"], "--idle-timeout: must be a number of seconds > 0"),
    (["--max-connections", "0"], "--max-connections: must be a whole number > 0"),
    (["--max-threads", "x"], "--max-threads: must be a whole number > 0"),
    (["--latency", "inf"], "--latency: must be"),
    (["--tokens-per-second", "nan"], "--tokens-per-second: must be"),
])
def test_serve_refuses_bad_connection_options_in_one_line(capsys, args, fragment):
    import argparse

    from pienteger_nb.emulator import add_serve_arguments

    parser = argparse.ArgumentParser(prog="pienteger-nb serve")
    add_serve_arguments(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
