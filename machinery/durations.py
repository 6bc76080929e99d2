"""Durations as Kubernetes' components and kubectl take them (Go's
time.ParseDuration): `1h0m0s`, `90s`, `1m30s`, `500ms`, `1.5h`; kctl also
takes a bare number as seconds (`2`).  One parser for every component's
flags and for kctl's."""
from __future__ import annotations

import re

UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def parse(text: str) -> float:
    """Seconds in `text`; ValueError when it is not a duration."""
    s = str(text).strip()
    if _NUMBER.fullmatch(s):
        return float(s)
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}: want e.g. 1h0m0s, 90s, 500ms or a number of seconds")
        total += float(m.group(1)) * UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise ValueError(f"invalid duration {text!r}: empty")
    return total


def duration(text: str) -> float:
    """parse() as an argparse `type=`: argparse names the flag and prints the reason."""
    try:
        return parse(text)
    except ValueError as exc:
        import argparse
        raise argparse.ArgumentTypeError(str(exc)) from None
