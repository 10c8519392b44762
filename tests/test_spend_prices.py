"""Prices: set_prices, the prices file and setting, cost_usd, and %pienteger prices."""

from __future__ import annotations

import json

import pytest

import pienteger_nb.ledger.prices as prices_mod
from pienteger_nb import config
from pienteger_nb.ledger.prices import cost_usd, prices, read_file, set_prices


@pytest.fixture(autouse=True)
def _no_prices():
    set_prices(None)
    yield
    set_prices(None)


def test_each_shape_of_price_and_per():
    set_prices({"a": 0.02, "b": (0.01, 0.03), "c": {"prompt": 1, "completion": 2}})
    assert cost_usd("a", 1000, 500) == pytest.approx(0.03)
    assert cost_usd("b", 1000, 1000) == pytest.approx(0.04)
    assert cost_usd("c", 500, 0) == pytest.approx(0.5)
    assert cost_usd("unknown", 10, 10) is None
    set_prices({"m": 2.0}, per=1_000_000)  # USD per million tokens
    assert cost_usd("m", 1_000_000, 0) == pytest.approx(2.0)
    frame = prices()
    assert list(frame.columns) == ["prompt", "completion"] and frame.index.name == "model"
    assert frame.loc["m", "prompt"] == pytest.approx(0.002)  # shown per 1,000 tokens


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"a": -1}, ["'a'", "price", ">= 0"]),
        ({"a": "cheap"}, ["'a'", "price", "not a number"]),
        ({"a": {"prompt": 1}}, ["'a'", "'prompt' and 'completion'"]),
        ({"a": {"prompt": 1, "completion": None}}, ["'a'", "completion"]),
        ({"a": (1, 2, 3)}, ["'a'", "pair"]),
        ([1, 2], ["must map"]),
    ],
)
def test_a_bad_table_is_one_line_naming_model_and_field_and_the_old_table_stays(table, words):
    set_prices({"keep": 0.5})
    with pytest.raises(ValueError) as info:
        set_prices(table)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert cost_usd("keep", 1000, 0) == pytest.approx(0.5)


def test_the_prices_file_from_the_environment_and_a_bad_edit_keeps_the_last_good_table(tmp_path, monkeypatch):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"text-davinci-003": {"prompt": 0.02, "completion": 0.04}}))
    monkeypatch.setenv("PIENTEGER_PRICES", str(path))
    assert cost_usd("text-davinci-003", 1000, 1000) == pytest.approx(0.06)
    path.write_text(json.dumps({"text-davinci-003": {"prompt": -2, "completion": 0.04}}))
    import os

    os.utime(path, ns=(1, 1))  # a new mtime whatever the file system's resolution
    with pytest.warns(RuntimeWarning, match="'text-davinci-003': prompt"):
        assert cost_usd("text-davinci-003", 1000, 1000) == pytest.approx(0.06)
    # set_prices wins over the file in this kernel; None goes back to the file
    set_prices({"text-davinci-003": 1})
    assert cost_usd("text-davinci-003", 1000, 0) == pytest.approx(1)


def test_read_file_says_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_file(bad)
    with pytest.raises(ValueError, match="cannot read"):
        read_file(tmp_path / "missing.json")


def test_percent_config_prices_checks_the_file_and_percent_prices_shows_the_table(ip, tmp_path, capsys):
    from IPython.core.error import UsageError

    good = tmp_path / "p.json"
    good.write_text(json.dumps({"text-ada-001": [0.001, 0.002]}))
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"text-ada-001": "free"}))
    with pytest.raises(UsageError, match="'text-ada-001'"):
        ip.run_line_magic("pienteger", f"config prices={bad}")
    assert config.get("prices") is None
    ip.run_line_magic("pienteger", f"config prices={good}")
    assert prices_mod.cost_usd("text-ada-001", 1000, 1000) == pytest.approx(0.003)
    capsys.readouterr()
    ip.run_line_magic("pienteger", "prices")
    out = capsys.readouterr().out
    assert "text-ada-001" in out and "0.002" in out
