"""A throwaway PostgreSQL cluster for the team-ledger tests and benchmarks.

``Cluster`` runs ``initdb`` and ``pg_ctl`` on a free loopback port in a temporary folder (its
unix socket there too). PostgreSQL refuses to run as root, so as root the folder is given to
the ``postgres`` user and the binaries run through ``runuser``. Logins over TCP need a
password (scram), so a test can see a refused login; the socket trusts the OS user.

The fixtures: ``pg_cluster`` (one per session, stopped at teardown) and ``pg_url`` (a fresh
database per test). Without the binaries the tests skip, saying how to install them, except
under ``CI=true``, where they fail.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = (
    "PostgreSQL binaries (initdb, pg_ctl) not found: install them with "
    "`apt-get install -y postgresql` (Debian/Ubuntu) or `brew install postgresql`, "
    "or put their folder on PATH"
)
PASSWORD_LENGTH = 24


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: PATH first, then Debian's versioned folders."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(folder, "initdb")):
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """One PostgreSQL server in its own folder; ``url(db)`` is a login URL with the password."""

    def __init__(self, bin_dir: Path, *, fsync: bool = False):
        self.bin_dir = bin_dir
        self.fsync = fsync
        self.password = secrets.token_urlsafe(PASSWORD_LENGTH)
        self.user = "postgres"
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pienteger-pg-"))
        self.data = self.root / "data"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, user="postgres", group="postgres")
        (self.root / "pw").write_text(self.password + "\n")
        if self.as_root:
            shutil.chown(self.root / "pw", user="postgres", group="postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", self.user, "--pwfile", str(self.root / "pw"),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
        )
        (self.root / "pw").unlink()

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", "-o", options, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{self.user}:{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass  # already stopped (a test stopped it and failed before restarting)
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(*, fsync: bool = False) -> Cluster:
    """A started cluster, or a skip (a failure under CI=true) when there are no binaries."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        message = 'psycopg is not installed: pip install -e ".[team]"'
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    cluster = Cluster(bin_dir, fsync=fsync)
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One PostgreSQL server for the session; stopped and removed at teardown."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


_counter = iter(range(1, 10**9))


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh, empty database on the session's server: its URL, password included."""
    return pg_cluster.create_database(f"t{os.getpid()}_{next(_counter)}")


BACKENDS = ["sqlite", "postgres"]


def open_ledger(request: pytest.FixtureRequest, sqlite_path: Path, **options: object) -> object:
    """A ``UsageLog`` at ``sqlite_path`` or, for the "postgres" parameter, a ``PostgresLog`` on a fresh database.

    For ledger fixtures parametrised with ``BACKENDS``: the same tests run on both.
    """
    if request.param == "sqlite":
        from pienteger_nb.ledger.store import UsageLog

        return UsageLog(sqlite_path, **options)  # type: ignore[arg-type]
    from pienteger_nb.ledger.postgres import PostgresLog

    url = request.getfixturevalue("pg_url")
    return PostgresLog(url, spool=sqlite_path.parent / "spool.sqlite", **options)  # type: ignore[arg-type]


def location(log: object) -> str:
    """Where a test ledger is, as PIENTEGER_USAGE_DB or ``--db`` take it (a team ledger's URL with its password)."""
    return str(getattr(log, "_url", None) or log.path)
