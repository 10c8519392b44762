"""Safe prompt interpolation: names and indexing only; everything else stays as typed."""

from __future__ import annotations

import os

import pytest

from pienteger_nb.interpolate import interpolate
from pienteger_nb.types import Choice, Completion, Usage

NS = {
    "name": "Bob",
    "rows": ["first", "second"],
    "d": {"k": "v", "n": {"deep": 1}},
    "x": 3.14159,
    "os": os,
    "n": 7,
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hello {name}!", "Hello Bob!"),
        ("{rows[0]} then {rows[1]}, last {rows[-1]}", "first then second, last second"),
        ("{d['k']} {d[\"k\"]} {d[k]} {d['n']['deep']}", "v v v 1"),
        ("{x:.2f}|{n:>4}|{name!r}", "3.14|   7|'Bob'"),
        ("{{name}} is literal, {name} is not", "{name} is literal, Bob is not"),
        ('{{"who": "{name}"}}', '{"who": "Bob"}'),
        # A nested field in a spec is not a format spec: the outer braces stay, the inner fills.
        ("{name:{n}}", "{name:7}"),
        ("", ""),
        ("no fields at all", "no fields at all"),
    ],
)
def test_fields_are_filled(template: str, expected: str) -> None:
    assert interpolate(template, NS) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{os.environ}",
        "{os.environ[HOME]}",
        "{name.__class__}",
        "{x.__class__.__mro__}",
        "{name.upper()}",
        "{1+1}",
        "{__import__('os')}",
        "{unknown}",
        "{rows[9]}",
        "{d['missing']}",
        "{name[zz]}",
        "{}",
        "{ name }",
        "{name:zz}",
        "{x!z}",
        '{"a": 1, "b": {"c": [1, 2]}}',
        '[{"role": "user"}, {"role": "bot"}]',
        "{n: 1}",
        "a } b { c",
        "}}",
        "function f() { return {a: 1}; }",
    ],
)
def test_everything_else_stays_as_typed(template: str) -> None:
    assert interpolate(template, NS) == template


def test_mixed_json_and_fields_keeps_the_json() -> None:
    template = '{"user": "{name}", "meta": {"tries": 2}}'
    assert interpolate(template, NS) == '{"user": "Bob", "meta": {"tries": 2}}'


def test_values_are_not_reinterpolated() -> None:
    # A value that itself looks like a field is inserted as it is, not filled again.
    assert interpolate("{a}", {"a": "{name}", "name": "Bob"}) == "{name}"


def test_a_completion_is_filled_in_as_its_text() -> None:
    prev = Completion(id="c", model="m", choices=(Choice(text="earlier answer"),), usage=Usage())
    assert interpolate("Go on from: {prev}", {"prev": prev}) == "Go on from: earlier answer"


def test_the_namespace_is_only_read() -> None:
    ns = dict(NS)
    interpolate("{name} {rows[0]} {missing}", ns)
    assert ns == NS


class _Awkward:
    def __str__(self) -> str:
        raise RuntimeError("cannot show myself")

    def __getitem__(self, key: object) -> object:
        raise RuntimeError("cannot index")


def test_a_value_that_fails_to_index_or_format_stays_as_typed() -> None:
    # Any failure, not only LookupError/ValueError: a magic must not end in a traceback here.
    assert interpolate("{a} {a[0]} {name}", {"a": _Awkward(), "name": "Bob"}) == "{a} {a[0]} Bob"
