"""The service's address: the base URL's strict grammar, what counts as loopback, and where the
key may be sent (never over plain http to a host that is not loopback, as the HTTP stack reads it).

``config`` re-exports these names; they live here so the settings module stays about settings.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .errors import ConfigurationError

DEFAULT_BASE_URL = "https://api.pienteger.com/oaiv1"


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback literals only (``127.0.0.0/8``, ``[::1]``).

    Names ending in ``.localhost`` are not trusted by their spelling: they are resolved through
    DNS here, and a resolver may send them anywhere."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# What we accept in a base URL: a strict subset of RFC 3986, so that every HTTP stack reads the
# same host out of it (a `\\`, a space or a stray `@` in the authority is read differently by
# different parsers: the loopback check must see the host the request really goes to).
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)\Z", re.DOTALL)
_AUTHORITY = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?\Z")
_PATH = re.compile(r"(?:/[A-Za-z0-9\-._~%!$&'()*+,;=:@]*)*/?\Z")
_URL_HELP = f"set PIENTEGER_BASE_URL to e.g. {DEFAULT_BASE_URL}"


@dataclass(frozen=True)
class BaseURL:
    """A base URL's parts, as read by ``check_base_url``."""

    scheme: str
    host: str  # lower case; an IPv6 literal keeps its brackets
    port: int | None
    path: str


def parse_base_url(url: str) -> BaseURL:
    """The parts of a base URL, or ConfigurationError (one line) when it is not one we can use."""
    text = str(url).strip()
    shown = text if len(text) <= 80 else text[:79] + "…"
    match = _URL.match(text)
    if match is None or match["scheme"].lower() not in ("http", "https"):
        raise ConfigurationError(f"base URL {shown!r} is not an http(s) URL; {_URL_HELP}")
    authority, rest = match["authority"], match["rest"]
    if "@" in authority:
        raise ConfigurationError("base URL must not carry credentials; use PIENTEGER_API_KEY for the key")
    if "?" in rest or "#" in rest:
        raise ConfigurationError(
            f"base URL {shown!r} must not have a query string or fragment (paths are added after it); {_URL_HELP}"
        )
    where = _AUTHORITY.match(authority)
    bad_ip = False
    if where is not None and where["host"].startswith("["):
        try:
            bad_ip = ipaddress.ip_address(where["host"][1:-1]).version != 6
        except ValueError:
            bad_ip = True
    port = int(where["port"]) if where is not None and where["port"] else None
    if where is None or bad_ip or (port is not None and not 0 < port < 65536):
        raise ConfigurationError(
            f"base URL {shown!r} has a host or port that is not valid (a host is letters, digits, "
            f"dots and hyphens, an IP address or [IPv6]); {_URL_HELP}"
        )
    if not _PATH.match(rest):
        raise ConfigurationError(
            f"base URL {shown!r} has characters a URL path cannot hold (encode them as %XX); {_URL_HELP}"
        )
    parts = BaseURL(match["scheme"].lower(), where["host"].lower(), port, rest)
    _check_round_trip(text, parts, shown)
    return parts


def _check_round_trip(text: str, parts: BaseURL, shown: str) -> None:
    """Refuse a URL that the HTTP stack (urllib3's parser) would read differently from us."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        theirs = parse_url(text)
    except (LocationParseError, ValueError):
        theirs = None
    if (
        theirs is None
        or (theirs.scheme or "").lower() != parts.scheme
        or (theirs.host or "").lower() != parts.host
        or theirs.port != parts.port
        or (theirs.path or "") != parts.path
        or theirs.auth or theirs.query is not None or theirs.fragment is not None
    ):
        raise ConfigurationError(f"base URL {shown!r} is ambiguous (HTTP libraries read it differently); {_URL_HELP}")


def check_base_url(url: str) -> str:
    """The URL without a trailing slash, or ConfigurationError when it is not usable."""
    parse_base_url(url)
    return str(url).strip().rstrip("/")


def check_key_transport(url: str, proxy: str | None = None) -> None:
    """Refuse to send a key over plain http to a host that is not loopback, directly or via ``proxy``."""
    parts = parse_base_url(url)
    if parts.scheme != "http":
        return
    if not is_loopback(parts.host):
        raise ConfigurationError(
            f"refusing to send the API key over plain http to {parts.host}; use https "
            "(plain http is allowed only to localhost and loopback addresses, e.g. the bundled emulator)"
        )
    # A plain-http request goes to its proxy whole, X-Api-Key included. The proxy's host is read
    # by urllib3's own parser, the one that connects to it.
    proxy_host = _proxy_host(proxy) if proxy else None
    if proxy and not is_loopback(proxy_host):
        raise ConfigurationError(
            f"refusing to send the API key over plain http through the proxy {proxy_host}; add "
            f"{parts.host} to NO_PROXY (or use https)"
        )


def _proxy_host(proxy: str) -> str | None:
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        return parse_url(proxy if "://" in proxy else f"http://{proxy}").host
    except (LocationParseError, ValueError):
        return None


__all__ = ["BaseURL", "check_base_url", "check_key_transport", "is_loopback", "parse_base_url"]
