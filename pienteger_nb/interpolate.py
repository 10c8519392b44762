"""Safe ``{name}`` interpolation of prompts from the user namespace.

Unlike ``str.format`` this never evaluates attribute access or expressions: a field is a
plain name, optionally indexed (``{rows[0]}``, ``{d['key']}``, ``{d["key"]}``, ``{d[key]}``
as ``str.format`` reads a bare key), optionally with a conversion (``!r``, ``!s``, ``!a``)
and a format spec (``{x:>10}``, ``{price:.2f}``). Everything else stays exactly as typed:
unknown names, lookups that fail, ``{x.attr}``, ``{os.environ}``, ``{1+1}``, JSON such as
``{"a": 1}``. ``{{`` and ``}}`` are literal braces, as in ``str.format``, with one
difference that keeps JSON intact: a ``}}`` becomes ``}`` only when it closes an earlier
``{{``. ``{{`` never occurs in JSON, but ``}}`` (nested objects closing) does, so
``{"a": {"b": 1}}`` is left alone while ``{{"name": "{name}"}}`` gives ``{"name": "Bob"}``.

The format spec is applied with ``format(value, spec)`` and may not start with whitespace
(so ``{a: 1}`` in JSON-like text is left alone) nor contain braces; a spec the value
rejects, or a value whose indexing or ``str()`` fails, leaves the field as typed. A
``Completion`` (``-o NAME`` of an earlier cell) is filled in as its text.

Cells are plain names too: the magic fills from the user namespace, where IPython keeps
``In`` (sources), ``Out`` (results) and ``_``, plus the extension's ``Err`` (the error text of
each cell that raised), so ``{In[3]}``, ``{Out[3]}``, ``{Err[3]}`` and ``{_}`` need no special case.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

# {name[index]...!conv:spec}; an index is an integer, a quoted string or a bare word.
_FIELD = re.compile(
    r"""\{
    (?P<name>[A-Za-z_]\w*)
    (?P<index>(?:\[(?:-?\d+|'[^'\]]*'|"[^"\]]*"|[A-Za-z_]\w*)\])*)
    (?:!(?P<conv>[rsa]))?
    (?::(?P<spec>[^\s{}][^{}]*))?
    \}""",
    re.VERBOSE,
)
_INDEX = re.compile(r"""\[(-?\d+|'[^'\]]*'|"[^"\]]*"|[A-Za-z_]\w*)\]""")
_MISSING = object()
_CONVERSIONS: dict[str, Callable[[object], str]] = {"r": repr, "s": str, "a": ascii}


def _indexed(value: Any, index: str) -> Any:
    for raw in _INDEX.findall(index):
        key: Any
        if raw[0] in "'\"":
            key = raw[1:-1]
        elif raw.lstrip("-").isdigit():
            key = int(raw)
        else:
            key = raw
        try:
            value = value[key]
        except Exception:  # noqa: BLE001  any failed lookup leaves the field as typed
            return _MISSING
    return value


def _filled(match: re.Match[str], namespace: Mapping[str, Any]) -> str:
    name = match.group("name")
    if name not in namespace:
        return match.group(0)
    value = _indexed(namespace[name], match.group("index") or "")
    if value is _MISSING:
        return match.group(0)
    from .types import Completion

    if isinstance(value, Completion):
        value = value.text
    conv = match.group("conv")
    try:
        if conv:
            value = _CONVERSIONS[conv](value)
        return format(value, match.group("spec") or "")
    except Exception:  # noqa: BLE001  a spec the value rejects, or a value that cannot show itself
        return match.group(0)


def interpolate(template: str, namespace: Mapping[str, Any]) -> str:
    """The template with ``{name}`` fields filled from ``namespace``; see the module docstring."""
    out: list[str] = []
    i, n = 0, len(template)
    escaped_open = 0  # "{{" seen and not yet closed by "}}"
    while i < n:
        ch = template[i]
        if ch == "{":
            if template.startswith("{{", i):
                out.append("{")
                escaped_open += 1
                i += 2
                continue
            match = _FIELD.match(template, i)
            if match:
                out.append(_filled(match, namespace))
                i = match.end()
                continue
        elif ch == "}" and escaped_open and template.startswith("}}", i):
            out.append("}")
            escaped_open -= 1
            i += 2
            continue
        # Copy the run of ordinary text up to the next brace in one go.
        j = i + 1
        while j < n and template[j] not in "{}":
            j += 1
        out.append(template[i:j])
        i = j
    return "".join(out)


__all__ = ["interpolate"]
