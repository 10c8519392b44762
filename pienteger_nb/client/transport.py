"""The HTTP sessions a Client uses: one per thread, with our User-Agent, proxies read once."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import requests

_version: str | None = None


def user_agent() -> str:
    """``pienteger-nb/<version>``."""
    global _version
    if _version is None:
        try:
            from importlib.metadata import version

            _version = version("pienteger_nb")
        except (ImportError, ValueError, LookupError):  # not installed: running from a checkout
            _version = "0"
    return f"pienteger-nb/{_version}"


class _Session(requests.Session):
    """A Session that closes its pooled connections when it is garbage (its thread ended)."""

    def close(self) -> None:
        # urllib3 2 closes a pool only once it is garbage, and a kept Stream (its response) keeps
        # its pool alive: close the pools here, or their idle sockets outlive the session.
        for adapter in self.adapters.values():
            managers = [getattr(adapter, "poolmanager", None), *getattr(adapter, "proxy_manager", {}).values()]
            for manager in managers:
                for key in list(manager.pools.keys()) if manager is not None else ():
                    pool = manager.pools.get(key)
                    if pool is not None:
                        pool.close()
        super().close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def new_session(proxies: dict[str, str]) -> requests.Session:
    """A Session for one thread (closed by the garbage collector when the thread drops it)."""
    session = _Session()
    session.headers["User-Agent"] = user_agent()
    # The CA bundle is read once per session and the proxies once per client, not on every
    # request; trust_env off also keeps ~/.netrc credentials out of our requests.
    session.trust_env = False
    session.proxies.update(proxies)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


def drain(response: requests.Response, source: Iterator[bytes], limit: int = 65536) -> None:
    """Read the few bytes after ``[DONE]`` (the chunked body's terminator), so the connection
    goes back to the pool instead of being closed: the next stream skips a TCP (and TLS) handshake.

    Only bytes that have already arrived: the socket is non-blocking meanwhile, because a server
    may hold the body open after ``[DONE]`` and the caller must not wait for it. A read that would
    wait fails, and so does anything past ``limit``; the connection is then closed, not pooled."""
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is None:
        return
    try:
        timeout = sock.gettimeout()
        sock.settimeout(0)
    except Exception:  # noqa: BLE001 - a socket-like object that cannot: just do not drain
        return
    seen = 0
    try:
        with contextlib.suppress(Exception):
            for piece in source:
                seen += len(piece)
                if seen > limit:
                    break
    finally:
        with contextlib.suppress(Exception):
            sock.settimeout(timeout)


__all__ = ["drain", "new_session", "user_agent"]
