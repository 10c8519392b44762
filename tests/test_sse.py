"""The SSE decoder, fed every split of tricky byte streams (pure: no I/O)."""

from __future__ import annotations

import itertools

import pytest

from pienteger_nb.client.sse import Event, SSEDecoder, decode_all


def feed_split(body: bytes, cuts: tuple[int, ...]) -> list[Event]:
    decoder = SSEDecoder()
    events: list[Event] = []
    last = 0
    for cut in (*cuts, len(body)):
        events += decoder.feed(body[last:cut])
        last = cut
    return events + decoder.close()


def feed_data_split(body: bytes, cuts: tuple[int, ...]) -> list[str]:
    decoder = SSEDecoder()
    out: list[str] = []
    last = 0
    for cut in (*cuts, len(body)):
        out += decoder.feed_data(body[last:cut])
        last = cut
    return out + [e.data for e in decoder.close()]


def every_split(body: bytes, expected: list[Event]) -> None:
    """Every single split and every pair of splits gives the same events as one read."""
    assert decode_all(body) == expected
    datas = [e.data for e in expected]
    for i in range(len(body) + 1):
        assert feed_data_split(body, (i,)) == datas, f"feed_data split at {i}"
    for i in range(len(body) + 1):
        assert feed_split(body, (i,)) == expected, f"split at {i}"
    for i, j in itertools.combinations(range(len(body) + 1), 2):
        assert feed_split(body, (i, j)) == expected, f"split at {i}, {j}"
    # one byte at a time
    assert feed_split(body, tuple(range(1, len(body)))) == expected


def data(*values: str) -> list[Event]:
    return [Event(v) for v in values]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_ends_split_everywhere(eol):
    body = (b"data: one" + eol + eol + b"data: two" + eol + eol + b"data: [DONE]" + eol + eol)
    every_split(body, data("one", "two", "[DONE]"))


def test_crlf_split_across_reads_is_one_line_end():
    # "\r" ends one read and "\n" starts the next: one line end, not a blank line in between.
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == [Event("a\nb")]
    assert decoder.feed(b"\n") == []
    assert decoder.close() == []


def test_mixed_line_ends():
    body = b"data: a\r\n\rdata: b\n\r\ndata: c\r\r"
    every_split(body, data("a", "b", "c"))


@pytest.mark.parametrize("char", ["é", "✅", "😀"])
def test_utf8_character_split_across_reads(char):
    text = f"x{char}y{char}"
    body = f'data: {{"text": "{text}"}}\n\n'.encode() + f"data: {char}\n\n".encode()
    every_split(body, data(f'{{"text": "{text}"}}', char))


def test_comments_fields_and_multiline_data():
    body = (
        b": keep-alive\n\n"
        b"event: completion\nid: 7\nretry: 1500\ndata: {\"a\":\ndata: 1}\n\n"
        b":another comment\ndata: plain\n\n"
    )
    expected = [
        Event('{"a":\n1}', "completion", "7", 1500),
        Event("plain", "message", "7", None),  # the last id persists
    ]
    every_split(body, expected)


def test_field_syntax_edge_cases():
    body = (
        b"data\n\n"  # a field name alone: empty value, an event with empty data
        b"data:no-space\n\n"
        b"data:  two spaces\n\n"  # only one leading space is removed
        b"unknown: x\ndata: y\n\n"
        b"retry: soon\ndata: z\n\n"  # a non-numeric retry is ignored
        b"id: a\x00b\ndata: w\n\n"  # an id with NUL is ignored
        b"event: only-fields\n\n"  # no data: nothing dispatched
    )
    expected = [Event(""), Event("no-space"), Event(" two spaces"), Event("y"), Event("z"), Event("w")]
    every_split(body, expected)


def test_leading_bom_is_dropped_even_when_split():
    body = b"\xef\xbb\xbfdata: a\n\ndata: b\n\n"
    every_split(body, data("a", "b"))


def test_bom_only_at_start():
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef\xbb") == []
    assert decoder.close() == []


def test_no_trailing_blank_line_still_gives_the_last_event():
    body = b"data: a\n\ndata: [DONE]\n"
    every_split(body, data("a", "[DONE]"))
    decoder = SSEDecoder()
    decoder.feed(body)
    decoder.close()
    assert not decoder.truncated


def test_last_line_cut_mid_line_is_dropped_and_flagged():
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"ok": 1}\n\ndata: {"te') == [Event('{"ok": 1}')]
    assert decoder.close() == []
    assert decoder.truncated


def test_extra_blank_lines_between_events():
    body = b"\n\ndata: a\n\n\n\n\ndata: b\n\n\n"
    every_split(body, data("a", "b"))


def test_many_events_in_one_read_and_one_event_over_many_reads():
    body = b"".join(b"data: %d\n\n" % i for i in range(1000))
    assert decode_all(body) == data(*(str(i) for i in range(1000)))
    long = b"data: " + b"x" * 100_000 + b"\n\n"
    decoder = SSEDecoder()
    out: list[Event] = []
    for i in range(0, len(long), 7):
        out += decoder.feed(long[i : i + 7])
    assert out == [Event("x" * 100_000)]


def test_invalid_utf8_is_replaced_not_raised():
    assert decode_all(b"data: \xff\xfe\n\n") == [Event("\ufffd\ufffd")]
