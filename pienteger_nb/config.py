"""Settings from arguments, this kernel, the environment and defaults; the masked key.

Precedence: explicit argument > kernel setting (``%pienteger config``) > ``PIENTEGER_*``
environment variable > default. Nothing is cached at import: every ``resolve()`` reads the
environment again.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError

DEFAULT_BASE_URL = "https://api.pienteger.com/oaiv1"
DEFAULT_MODEL = "text-davinci-003"
FORMATS = ("markdown", "text", "code", "html", "json")

KEY_HELP = (
    "set PIENTEGER_API_KEY in the environment, run %pienteger login in a notebook, "
    "or pass Client(api_key=...)"
)


class Secret:
    """An API key that never shows itself: str() and repr() give ``****abcd``."""

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret):
        # Surrounding whitespace is never part of a key: it comes with a paste or a file's last line.
        self._value = value.get() if isinstance(value, Secret) else str(value).strip()

    def get(self) -> str:
        """The real key, for the ``X-Api-Key`` header only."""
        return self._value

    @property
    def masked(self) -> str:
        return mask(self._value)

    def __repr__(self) -> str:
        return f"Secret('{self.masked}')"

    def __str__(self) -> str:
        return self.masked

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:  # never pickle the key into a file by accident
        raise TypeError("a Secret cannot be pickled")


def mask(key: str | None) -> str:
    """``****abcd`` for a key (the last 4 characters, none when the key is short)."""
    if not key:
        return "(not set)"
    return "****" + (key[-4:] if len(key) >= 12 else "")


# Parsers take the text typed in `%pienteger config` or an environment variable, or a value
# set from Python, and refuse what a call would refuse: a mistake is caught when it is made.


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    low = str(value).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _parse_format(value: Any) -> str:
    if value not in FORMATS:
        raise ValueError(f"must be one of {', '.join(FORMATS)}, got {value!r}")
    return str(value)


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


def _number(value: Any, kind: type, *, low: float, high: float, what: str) -> Any:
    """``value`` as ``kind`` when ``low <= value <= high`` (nan refused); else ValueError
    "must be <what>"."""
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be {what}, got {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"must be {what}, got {value!r}")
    return number


def _temperature(value: Any) -> float | None:
    return None if _is_none(value) else _number(value, float, low=0, high=2, what="a number from 0 to 2")


def _max_tokens(value: Any) -> int | None:
    return None if _is_none(value) else _number(value, int, low=0, high=math.inf, what="an integer >= 0")


def _timeout(value: Any) -> float:
    return _number(value, float, low=1e-3, high=1e6, what="a number of seconds > 0 (and finite)")


def _cache(value: Any) -> Any:
    from .replay import parse_cache_setting  # a leaf: no cycle, and config stays importable alone

    return parse_cache_setting(value)


def _max_retries(value: Any) -> int:
    return _number(value, int, low=0, high=math.inf, what="an integer >= 0")


def _path_or_none(value: Any) -> str | None:
    # The file's contents are checked where prices are read (ledger.prices), not in this leaf.
    return None if _is_none(value) else os.path.expanduser(str(value).strip())


@dataclass(frozen=True)
class _Field:
    parse: Callable[[Any], Any]
    default: Any
    env: str | None = None
    help: str = ""


# The settings `%pienteger config` knows (never the key), with their parsers and defaults.
FIELDS: dict[str, _Field] = {
    "model": _Field(str, DEFAULT_MODEL, "PIENTEGER_MODEL", "default model"),
    "base_url": _Field(str, DEFAULT_BASE_URL, "PIENTEGER_BASE_URL", "API root"),
    "temperature": _Field(_temperature, None, None, "default temperature (service default when none)"),
    "max_tokens": _Field(_max_tokens, None, None, "default max_tokens (service default when none)"),
    "stream": _Field(_parse_bool, True, None, "stream tokens as they arrive"),
    "format": _Field(_parse_format, "markdown", None, "how the magic renders the result"),
    "timeout": _Field(_timeout, 60.0, None, "read timeout in seconds"),
    "max_retries": _Field(_max_retries, 2, None, "retries after the first try"),
    "show_usage": _Field(_parse_bool, True, None, "print the usage line after a completion"),
    "store_prompts": _Field(_parse_bool, False, None, "keep prompts and completions in the ledger"),
    "debug": _Field(_parse_bool, False, None, "show full tracebacks"),
    "prices": _Field(_path_or_none, None, "PIENTEGER_PRICES", "JSON file of USD per 1K tokens by model"),
    "cache": _Field(_cache, "auto", None, "replay stored answers: auto (temperature 0 or a seed), on, off"),
}

_lock = threading.Lock()
_kernel: dict[str, Any] = {}
_kernel_key: Secret | None = None


def check_name(name: str) -> None:
    """ConfigurationError unless ``name`` is a setting (the key never is; a typo gets a did-you-mean)."""
    if name in ("api_key", "key"):
        raise ConfigurationError("the key is not a config setting: use %pienteger login or PIENTEGER_API_KEY")
    if name not in FIELDS:
        import difflib

        near = difflib.get_close_matches(name, FIELDS, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise ConfigurationError(f"unknown setting {name!r}{hint}; known: {', '.join(FIELDS)}")


def parse_setting(name: str, value: Any) -> Any:
    """The checked value of a setting (text is parsed); ConfigurationError for an unknown name or a
    bad base URL, ValueError naming the setting for a value a call would refuse."""
    check_name(name)
    try:
        parsed = FIELDS[name].parse(value)
    except ValueError as exc:
        raise ValueError(f"{name} {exc}") from None
    return check_base_url(parsed) if name == "base_url" else parsed


def set_kernel(name: str, value: Any) -> Any:
    """Set a kernel-level setting (``%pienteger config name=value``); returns the parsed value."""
    parsed = parse_setting(name, value)
    with _lock:
        _kernel[name] = parsed
    return parsed


def clear_kernel(name: str | None = None) -> None:
    """Forget one kernel-level setting, or all of them (and the logged-in key)."""
    global _kernel_key
    with _lock:
        if name is None:
            _kernel.clear()
            _kernel_key = None
        else:
            _kernel.pop(name, None)


def set_kernel_key(key: str | Secret | None) -> None:
    """Keep a key in this kernel's memory only (``%pienteger login``)."""
    global _kernel_key
    with _lock:
        _kernel_key = Secret(key) if key else None


def get(name: str, explicit: Any = None) -> Any:
    """One setting's effective value."""
    return lookup(name, explicit)[0]


def lookup(name: str, explicit: Any = None) -> tuple[Any, str]:
    """(value, origin) for a setting; origin is argument, kernel, environment or default."""
    field = FIELDS[name]
    if explicit is not None:
        return explicit, "argument"
    with _lock:
        if name in _kernel:
            return _kernel[name], "kernel"
    if field.env:
        raw = os.environ.get(field.env)
        if raw:
            try:
                return field.parse(raw), "environment"
            except ValueError as exc:
                raise ConfigurationError(f"{field.env}={raw!r} is not valid: {exc}") from None
    return field.default, "default"


def client_settings() -> tuple[Any, ...]:
    """What a ``Client()`` reads when it is made; a cached client is stale when this changes."""
    return (api_key()[0], *(get(name) for name in ("base_url", "model", "timeout", "max_retries", "cache")))


def api_key(explicit: str | Secret | None = None) -> tuple[Secret | None, str]:
    """(key, origin), or (None, "missing")."""
    if explicit:
        return Secret(explicit), "argument"
    with _lock:
        if _kernel_key:
            return _kernel_key, "kernel"
    env = os.environ.get("PIENTEGER_API_KEY")
    if env:
        return Secret(env.strip()), "environment"
    return None, "missing"


def require_key(explicit: str | Secret | None = None) -> Secret:
    """The key, or a ConfigurationError that says how to set one."""
    key, _ = api_key(explicit)
    if key is None:
        raise ConfigurationError(f"no Pienteger API key: {KEY_HELP}")
    return key


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


def check_key_chars(key: Secret) -> None:
    """Refuse a key that cannot go in a header (requests would quote it whole in its error)."""
    value = key.get()
    if not (value.isascii() and value.isprintable()):
        raise ConfigurationError(
            "the API key holds a character that cannot be sent in a header (a line break, a control "
            "or non-ASCII character); check PIENTEGER_API_KEY or run %pienteger login again"
        )


def default_usage_db() -> str:
    """``PIENTEGER_USAGE_DB``, else ``$XDG_DATA_HOME/pienteger_nb/usage.sqlite``."""
    env = os.environ.get("PIENTEGER_USAGE_DB")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "pienteger_nb" / "usage.sqlite")


def is_database_url(target: str) -> bool:
    """Whether a ``PIENTEGER_USAGE_DB`` value names a PostgreSQL server rather than a file."""
    return target.startswith(("postgresql://", "postgres://"))


def mask_url(url: str) -> str:
    """The URL with any password (in the user part or a ``password=`` parameter) as ``****``."""
    if not is_database_url(url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        login, _, host = netloc.rpartition("@")
        user, colon, _password = login.partition(":")
        netloc = f"{user}{':****' if colon else ''}@{host}"
    query = "&".join(
        "password=****" if item.lower().startswith("password=") else item for item in parts.query.split("&")
    ) if parts.query else ""
    return parts._replace(netloc=netloc, query=query).geturl()


def describe() -> list[tuple[str, str, str]]:
    """(name, shown value, origin) for every setting, the key masked, for display."""
    key, origin = api_key()
    rows = [("api_key", key.masked if key else "(not set)", origin)]
    for name in FIELDS:
        value, where = lookup(name)
        shown = {True: "on", False: "off"}.get(value, value) if name == "cache" else value
        rows.append((name, "none" if shown is None else str(shown), where))
    db = default_usage_db()
    rows.append(("usage_db", mask_url(db), "environment" if os.environ.get("PIENTEGER_USAGE_DB") else "default"))
    return rows
