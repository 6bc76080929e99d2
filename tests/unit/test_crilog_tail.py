"""nodeagent/crilog.py: a tail read from the end of the file is the same as
the tail of the whole file, whatever the window size, with long lines split
into P chunks (also interleaved with the other stream), and it reads only
the end of a big log."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodeagent import crilog

line = st.tuples(st.sampled_from(["stdout", "stderr"]), st.lists(st.text("ab é\r", max_size=5), min_size=1,
                                                                  max_size=3))


def write(path, lines) -> None:
    """Each (stream, chunks): chunks[:-1] as P lines and the last as F, the
    other stream's lines sometimes between them (as conmon can write them)."""
    out = []
    for i, (stream, chunks) in enumerate(lines):
        for c in chunks[:-1]:
            out.append(f"2026-01-01T00:00:{i % 60:02d}Z {stream} P {c}\n")
        out.append(f"2026-01-01T00:00:{i % 60:02d}Z {stream} F {chunks[-1]}\n")
    path.write_text("".join(out))


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(line, max_size=25), n=st.integers(1, 30), block=st.integers(1, 64))
def test_tail_equals_the_tail_of_everything(tmp_path_factory, lines, n, block):
    path = tmp_path_factory.mktemp("log") / "c.log"
    write(path, lines)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(crilog, "BLOCK", block)
        assert crilog.read(path, n) == crilog.read(path)[-n:]


def test_interleaved_long_line_before_the_window(tmp_path, monkeypatch):
    path = tmp_path / "c.log"
    path.write_text("t stderr P abc\n" + "t stdout F x\n" * 50 + "t stderr F def\n")
    monkeypatch.setattr(crilog, "BLOCK", 16)
    assert [(e.stream, e.text) for e in crilog.read(path, 2)] == [("stdout", "x"), ("stderr", "abcdef")]


def test_a_tail_of_a_big_log_reads_its_end(tmp_path, monkeypatch):
    path = tmp_path / "c.log"
    with open(path, "w") as f:
        for i in range(200_000):
            f.write(f"2026-01-01T00:00:00Z stdout F line {i}\n")
    read = []
    real_open = open

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def seek(self, *a):
            return self.f.seek(*a)

        def read(self, n=-1):
            data = self.f.read(n)
            read.append(len(data))
            return data

    monkeypatch.setattr(crilog, "open", lambda p, mode="r": Counting(real_open(p, mode)), raising=False)
    assert [e.text for e in crilog.read(path, 3)] == ["line 199997", "line 199998", "line 199999"]
    assert sum(read) <= crilog.BLOCK < path.stat().st_size // 100
