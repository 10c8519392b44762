"""Settings from arguments, this kernel, the environment and defaults; the masked key.

Precedence: explicit argument > kernel setting (``%pienteger config``) > ``PIENTEGER_*``
environment variable > default. Nothing is cached at import: every ``resolve()`` reads the
environment again.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .address import (  # re-exported: the client, the magics and the tests ask config for them
    DEFAULT_BASE_URL,
    BaseURL,
    check_base_url,
    check_key_transport,
    is_loopback,
    parse_base_url,
)
from .errors import ConfigurationError

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


__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "FORMATS",
    "KEY_HELP",
    "BaseURL",
    "Secret",
    "api_key",
    "check_base_url",
    "check_key_chars",
    "check_key_transport",
    "check_name",
    "clear_kernel",
    "client_settings",
    "default_usage_db",
    "describe",
    "get",
    "is_database_url",
    "is_loopback",
    "lookup",
    "mask",
    "mask_url",
    "parse_base_url",
    "parse_setting",
    "require_key",
    "set_kernel",
    "set_kernel_key",
]
