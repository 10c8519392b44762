"""A pure, incremental server-sent-events decoder: bytes in, events out; no I/O.

Feed it the body exactly as it arrives (``response.iter_content(chunk_size=None)``), in any
split, and call ``close()`` at the end::

    decoder = SSEDecoder()
    for piece in response.iter_content(chunk_size=None):
        for event in decoder.feed(piece):
            ...
    for event in decoder.close():
        ...

It follows the WHATWG event-stream rules: CR, LF and CRLF line ends (a CRLF split across two
reads is one line end), ``:`` comment lines, ``event:``/``id:``/``retry:`` fields, several
``data:`` lines in one event joined with ``\\n``, and a leading byte-order mark. Events are cut
out of the byte stream before decoding, and line ends are ASCII, so a UTF-8 character split
across reads is always whole by the time its event is decoded.

Why not ``requests.iter_lines()``: it reports a false blank line when ``\\r\\n`` is split
across reads, and re-scans a long line on every read (psf/requests#3980).
"""

from __future__ import annotations

from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"
MAX_EVENT_BYTES = 1 << 20  # one event (its bytes before the blank line); real ones are < 10 KiB


class EventTooLarge(ValueError):
    """An event grew past the decoder's ``max_event`` bytes without ending."""

    def __init__(self, limit: int):
        super().__init__(f"an event grew past {limit} bytes without ending")
        self.limit = limit


class Event(NamedTuple):
    """One dispatched event: ``data`` (its ``data:`` lines joined with ``\\n``) and fields.

    ``id`` is the last event id seen so far in the stream (it persists across events, as the
    spec says); ``retry`` is the reconnection time this event asked for, if any.
    """

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Turns raw bytes, split anyhow, into ``Event`` objects."""

    __slots__ = ("_at_start", "_held", "_last_id", "_pending", "_skip_lf", "head", "max_event", "truncated")

    def __init__(self, max_event: int | None = None) -> None:
        self._pending: list[bytes] = []  # bytes after the last event boundary, LF-normalised
        self._held = 0  # their total size: past max_event, EventTooLarge (memory stays bounded)
        self.max_event = MAX_EVENT_BYTES if max_event is None else max_event
        self.head = b""  # the body's first bytes, to tell an HTML page from a stream
        self._skip_lf = False  # the previous read ended with CR: an LF now is its other half
        self._at_start = True  # a BOM may still come (possibly split across reads)
        self._last_id: str | None = None
        self.truncated = False  # close() found a last line cut short (no line end)

    def feed(self, data: bytes) -> list[Event]:
        """Events completed by this piece of the body (often none, often several)."""
        region = self._complete(data)
        return self._parse(region) if region is not None else []

    def feed_data(self, data: bytes) -> list[str]:
        """Like ``feed`` but only each event's ``data`` (the fast path for data-only streams)."""
        if data[-2:] == b"\n\n" and not self._pending and not self._skip_lf and not self._at_start \
                and b"\r" not in data:
            # One read holding whole events, the usual shape of a stream: no buffering needed.
            if data[:6] == b"data: " and data.find(b"\n") == len(data) - 2:
                return [data[6:-2].decode("utf-8", "replace")]
            region = data[:-2]
        else:
            completed = self._complete(data)
            if completed is None:
                return []
            region = completed
        out: list[str] = []
        append = out.append
        for block in region.split(b"\n\n"):
            if block[:6] == b"data: " and b"\n" not in block:
                append(block[6:].decode("utf-8", "replace"))
            else:
                for event in self._parse(block):
                    append(event.data)
        return out

    def _complete(self, data: bytes) -> bytes | None:
        """The bytes of the events this piece completes (without the last blank line), or None."""
        if not data:
            return None
        pending = self._pending
        # Fastest path: whole events in one read, nothing held back, LF line ends.
        if not pending and not self._skip_lf and not self._at_start and data[-2:] == b"\n\n" \
                and b"\r" not in data:
            return data[:-2]
        if self._skip_lf:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
                if not data:
                    return None
        if b"\r" in data:
            # Normalise to LF; a CR at the very end is a line end whose LF may come next read.
            self._skip_lf = data[-1:] == b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._at_start:
            head = b"".join(pending) + data
            if len(head) < 3 and _BOM.startswith(head):
                self._pending = [head]
                return None
            self._at_start = False
            self.head = head[:64]
            if head.startswith(_BOM):
                head = head[3:]
            pending.clear()
            data = head
        # No event boundary can end in this piece: keep it without copying.
        if b"\n\n" not in data and not (pending and data[:1] == b"\n" and pending[-1][-1:] == b"\n"):
            if data:
                pending.append(data)
                self._held += len(data)
                if self._held > self.max_event:
                    raise EventTooLarge(self.max_event)
            return None
        if pending:
            pending.append(data)
            buf = b"".join(pending)
            pending.clear()
        else:
            buf = data
        end = buf.rfind(b"\n\n")
        rest = buf[end + 2 :]
        self._held = len(rest)
        if rest:
            pending.append(rest)
            if self._held > self.max_event:
                raise EventTooLarge(self.max_event)
        return buf[:end]

    def close(self) -> list[Event]:
        """Events left at the end of the body: a last event whose blank line never came.

        A last line without any line end was cut off mid-line; it is dropped and
        ``truncated`` is set, so the caller can tell a cut stream from a tidy one.
        """
        buf = b"".join(self._pending)
        self._pending = []
        self._held = 0
        if self._at_start and _BOM.startswith(buf):
            buf = b""
        self._skip_lf = False
        if not buf.strip(b"\n"):
            return []
        if not buf.endswith(b"\n"):
            self.truncated = True
            cut = buf.rfind(b"\n")
            buf = buf[: cut + 1] if cut >= 0 else b""
        return self._parse(buf)

    def _parse(self, text: bytes) -> list[Event]:
        events: list[Event] = []
        append = events.append
        for block in text.split(b"\n\n"):
            # Stray extra blank lines become empty blocks or leading/trailing newlines.
            if block[:1] == b"\n" or block[-1:] == b"\n":
                block = block.strip(b"\n")
            if not block:
                continue
            # Fast path: the common single-line `data: ...` event.
            if block[:6] == b"data: " and b"\n" not in block:
                append(Event(block[6:].decode("utf-8", "replace"), "message", self._last_id))
                continue
            event = self._parse_block(block)
            if event is not None:
                append(event)
        return events

    def _parse_block(self, block: bytes) -> Event | None:
        data: list[bytes] = []
        name = b""
        retry: int | None = None
        for line in block.split(b"\n"):
            if line[:1] == b":":
                continue  # a comment, e.g. a keep-alive
            colon = line.find(b":")
            if colon < 0:
                field, value = line, b""
            else:
                field, value = line[:colon], line[colon + 1 :]
                if value[:1] == b" ":
                    value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = value
            elif field == b"id":
                if b"\x00" not in value:
                    self._last_id = value.decode("utf-8", "replace")
            elif field == b"retry" and value.isdigit():
                retry = int(value)
            # Unknown fields are ignored, as the spec says.
        if not data:
            return None  # nothing to dispatch (only comments or fields)
        return Event(
            b"\n".join(data).decode("utf-8", "replace"),
            name.decode("utf-8", "replace") or "message",
            self._last_id,
            retry,
        )


def decode_all(body: bytes) -> list[Event]:
    """Every event in a complete body (for tests and small, already-read bodies)."""
    decoder = SSEDecoder()
    return decoder.feed(body) + decoder.close()


__all__ = ["MAX_EVENT_BYTES", "Event", "EventTooLarge", "SSEDecoder", "decode_all"]
