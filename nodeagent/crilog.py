"""The CRI container log format conmon writes: ``TIME STREAM F|P TEXT`` per line.

conmon (``-l k8s-file:PATH``) writes each line of a container's stdout and
stderr as ``2026-01-02T03:04:05.123456789Z stdout F text``; a line longer
than its buffer is split into chunks tagged ``P`` (partial) and ended by an
``F`` (full) chunk.  ``CRILogParser`` joins them again, per stream, also
across ``feed()`` calls, so a follower reading the file as it grows never
splits a line.  ``read`` parses a whole file once; ``follow`` parses it as
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


def read(path: Path, tail: int | None = None) -> list[LogEntry]:
    """Every entry of the log file (the last TAIL ones with tail); [] if there is no file."""
    try:
        lines = path.read_text(errors="replace").splitlines(keepends=True)
    except FileNotFoundError:
        return []
    entries = CRILogParser().feed(lines)
    return entries[-tail:] if tail else entries


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
