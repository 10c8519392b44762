"""%%pienteger on screen: the live usage line, the output's provenance, replays and --refresh."""

from __future__ import annotations

from typing import Any

import pytest
from test_magics import Ticker, run

from pienteger_nb.ledger import prices


def usage_lines(r: Any) -> list[dict[str, Any]]:
    return [p for p in r.published if p["metadata"].get("pienteger", {}).get("usage_line")]


def completions_sent(emulator: Any) -> int:
    return sum(1 for q in emulator.requests if q.path.endswith("/completions"))


@pytest.fixture
def priced() -> None:
    # USD per 1,000 tokens: prompt 1, completion 2 (conftest's autouse fixture resets prices)
    prices.set_prices({"text-davinci-003": (1.0, 2.0)})


def test_the_usage_line_counts_live_with_the_fake_clock(ip: Any, magics: Any, env_emulator: Any,
                                                        priced: None) -> None:
    clock = Ticker(0.01)
    magics.clock = clock
    r = run(ip, "%%pienteger --max-tokens 60 -f text -o res\nTell a story")
    assert r.res.success, r.text
    lines = usage_lines(r)
    live = [p for p in lines if p["metadata"]["pienteger"].get("live")]
    assert len(live) >= 2 and live == lines[:-1]
    assert [p["update"] for p in lines] == [False] + [True] * (len(lines) - 1)  # one display, in place
    counts = [int(p["data"]["text/plain"].split(" → ")[1].split()[0]) for p in live]
    seconds = [float(p["data"]["text/plain"].rsplit("· ", 1)[1].split()[0]) for p in live]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    assert seconds == sorted(seconds) and seconds[-1] > seconds[0]
    assert all("tokens so far" in p["data"]["text/plain"] and "$" in p["data"]["text/plain"] for p in live)
    streamed = r.streamed
    assert len(live) <= len(streamed)  # only on the text's own (throttled) ticks
    res = ip.user_ns["res"]
    final = lines[-1]["data"]["text/plain"]
    expected = (res.usage.prompt_tokens * 1.0 + res.usage.completion_tokens * 2.0) / 1000
    assert f"→ {res.usage.completion_tokens} tokens · ${expected:.4f}" in final
    assert magics.last_usage.updates == len(live)


def test_unpriced_and_cached_in_the_final_line(ip: Any, magics: Any, env_emulator: Any) -> None:
    magics.clock = Ticker(0.01)
    first = run(ip, "%%pienteger -t 0 --max-tokens 20\nSay this is a test")
    assert "· unpriced ·" in usage_lines(first)[-1]["data"]["text/plain"]
    again = run(ip, "%%pienteger -t 0 --max-tokens 20\nSay this is a test")
    assert "· cached ·" in usage_lines(again)[-1]["data"]["text/plain"]
    assert completions_sent(env_emulator) == 1
    assert again.streamed  # the replay streams into the output as deltas


def test_the_output_metadata_carries_the_provenance(ip: Any, magics: Any, env_emulator: Any,
                                                    priced: None) -> None:
    magics.clock = Ticker(0.1)
    r = run(ip, "%%pienteger -t 0 --max-tokens 12 --stop END -o res\nSay this is a test")
    meta = r.final()["metadata"]["pienteger"]
    res = ip.user_ns["res"]
    assert meta["request_id"] == res.request_id and meta["request_id"]
    assert meta["model"] == res.model and meta["requested_model"] == "text-davinci-003"
    assert meta["params"] == {"temperature": 0.0, "max_tokens": 12, "stop": "END"}
    assert (meta["prompt_tokens"], meta["completion_tokens"], meta["total_tokens"]) == (
        res.usage.prompt_tokens, res.usage.completion_tokens, res.usage.total_tokens)
    assert meta["cost"] == pytest.approx((res.usage.prompt_tokens + 2 * res.usage.completion_tokens) / 1000)
    assert meta["cached"] is False and meta["time"].endswith("+00:00")
    replay = run(ip, "%%pienteger -t 0 --max-tokens 12 --stop END --no-stream\nSay this is a test")
    meta = replay.final()["metadata"]["pienteger"]
    assert meta["cached"] is True and meta["cost"] == 0 and meta["total_tokens"] == res.usage.total_tokens


def test_refresh_and_the_cache_subcommands(ip: Any, magics: Any, env_emulator: Any) -> None:
    magics.clock = Ticker(0.1)
    cell = "%%pienteger -t 0 --max-tokens 10{}\nSay this is a test"
    run(ip, cell.format(""))
    run(ip, cell.format(" --refresh"))
    assert completions_sent(env_emulator) == 2
    run(ip, cell.format(""))
    assert completions_sent(env_emulator) == 2
    shown = run(ip, "%pienteger cache")
    info = shown.published[-1]["metadata"]["pienteger"]["cache"]
    assert (info["entries"], info["replays"], info["setting"]) == (1, 1, "auto")
    assert "1 answers stored; 1 replays saved" in shown.published[-1]["data"]["text/plain"]
    cleared = run(ip, "%pienteger cache clear")
    assert "1 stored answer removed" in cleared.text
    run(ip, "%pienteger config cache=off")
    run(ip, cell.format(""))
    run(ip, cell.format(""))
    assert completions_sent(env_emulator) == 4
    bad = run(ip, "%pienteger config cache=sometimes")
    assert not bad.res.success and "cache must be auto, on or off" in bad.text
