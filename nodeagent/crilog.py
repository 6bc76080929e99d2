"""The CRI container log format conmon writes: ``TIME STREAM F|P TEXT`` per line.

conmon (``-l k8s-file:PATH``) writes each line of a container's stdout and
stderr as ``2026-01-02T03:04:05.123456789Z stdout F text``; a line longer
than its buffer is split into chunks tagged ``P`` (partial) and ended by an
``F`` (full) chunk.  ``CRILogParser`` joins them again, per stream, also
across ``feed()`` calls, so a follower reading the file as it grows never
splits a line.  ``read`` parses a whole file once, or with a tail only
its end (a window growing from the end, plus the chunks of a long line
that began before it); ``follow`` parses it as
it grows, for as long as the writer (conmon) lives (the runtime's
``read_log``/``follow_log``).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable


@dataclass
class LogEntry:
    time: str
    stream: str
    text: str


class CRILogParser:
    """Incremental parser of CRI log lines (``TIME STREAM F|P TEXT``).

    Partial chunks (tag P, written by conmon for long lines) are joined, per
    stream, with the following chunks up to the final F chunk, also across
    ``feed()`` calls (so a follower never splits a line).
    """

    def __init__(self) -> None:
        self._pending: dict[str, list[str]] = {}

    def feed(self, lines: list[str]) -> list[LogEntry]:
        out: list[LogEntry] = []
        for line in lines:
            parts = line.rstrip("\n").split(" ", 3)
            if len(parts) == 3:
                parts.append("")
            if len(parts) < 4:
                continue
            ts, stream, tag, text = parts
            self._pending.setdefault(stream, []).append(text)
            if tag != "P":
                out.append(LogEntry(ts, stream, "".join(self._pending.pop(stream))))
        return out


BLOCK = 64 * 1024


def read(path: Path, tail: int | None = None) -> list[LogEntry]:
    """Every entry of the log file (the last TAIL ones with tail); [] if there is no file.
    With tail the file is read from its end, a growing window at a time, so a
    tail of a huge log costs about what the tail is."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return []
    with f:
        if not tail:
            return CRILogParser().feed(f.read().decode(errors="replace").split("\n"))
        return _tail(f, tail)


def _fields(line: str) -> tuple[str, str, str, str] | None:
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) == 3:
        parts.append("")
    return tuple(parts) if len(parts) == 4 else None


def _tail(f, n: int) -> list[LogEntry]:
    """The last n entries. The window [start, end) starts at a line boundary;
    the first entry of each stream in it may continue P chunks written before
    the window (a long line conmon split): those chunks are looked up behind
    the window for the entries returned, never the whole file."""
    end = f.seek(0, 2)
    size = BLOCK
    while True:
        start = max(0, end - size)
        f.seek(start)
        data = f.read(end - start)
        if start > 0:                     # drop the partial first line
            nl = data.find(b"\n")
            data, start = (b"", end) if nl < 0 else (data[nl + 1:], start + nl + 1)
        entries: list[tuple[str, LogEntry]] = []
        pending: dict[str, list[str]] = {}
        first: dict[str, int] = {}
        for line in data.decode(errors="replace").split("\n"):
            f4 = _fields(line)
            if f4 is None:
                continue
            ts, stream, tag, text = f4
            pending.setdefault(stream, []).append(text)
            if tag != "P":
                first.setdefault(stream, len(entries))
                entries.append((stream, LogEntry(ts, stream, "".join(pending.pop(stream)))))
        if start == 0 or len(entries) >= n:
            break
        size *= 4
    out = [e for _, e in entries[-n:]]
    base = len(entries) - len(out)
    for stream, i in first.items():
        if start > 0 and i >= base:
            out[i - base].text = _chunks_before(f, start, stream) + out[i - base].text
    return out


def _chunks_before(f, pos: int, stream: str) -> str:
    """The text of the P chunks of `stream` that end right before `pos` (a
    line boundary): read backwards to that stream's previous full line."""
    chunks: list[str] = []
    rest = b""
    while pos > 0:
        step = min(BLOCK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + rest
        lines = data.split(b"\n")
        rest = lines.pop(0) if pos > 0 else b""       # maybe the tail of an earlier line
        for raw in reversed(lines):
            f4 = _fields(raw.decode(errors="replace"))
            if f4 is None or f4[1] != stream:
                continue
            if f4[2] != "P":
                return "".join(reversed(chunks))
            chunks.append(f4[3])
    return "".join(reversed(chunks))


async def follow(path: Path, writer_alive: Callable[[], bool], poll: float = 0.1) -> AsyncIterator[LogEntry]:
    """Yield entries from the start of the file, following it while ``writer_alive()``;
    once the writer is gone (it has flushed everything), the rest, then stop."""
    while not path.exists():
        if not writer_alive():
            return
        await asyncio.sleep(poll)
    parser = CRILogParser()
    with open(path, errors="replace") as f:
        buf = ""
        while True:
            chunk = f.read()
            if not chunk:
                if writer_alive():  # conmon writes until the container exited
                    await asyncio.sleep(poll)
                    continue
                chunk = f.read()  # conmon is gone: it has flushed the log
                if not chunk:
                    for e in parser.feed([buf] if buf else []):
                        yield e
                    return
            buf += chunk
            *complete, buf = buf.split("\n")
            for e in parser.feed(complete):
                yield e
