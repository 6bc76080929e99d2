"""bench/lab.py --perf: the recording runs until it is stopped (SIGINT, on which perf writes
its file), a perf that cannot start is one error, and stopping twice or without one is harmless.
A stand-in `perf` on PATH takes perf record's place."""
from __future__ import annotations

import asyncio
import os
import stat

import pytest

from bench import lab
from deploy.lab.naming import LabError

FAKE = """#!/bin/sh
# perf record ... -o FILE: write FILE on SIGINT, as perf does
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
trap 'echo recorded > "$out"; exit 0' INT
while :; do sleep 0.05; done
"""


def _fake_perf(tmp_path, monkeypatch, body: str) -> None:
    exe = tmp_path / "bin" / "perf"
    exe.parent.mkdir()
    exe.write_text(body)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")


def test_the_recording_runs_until_stopped_and_stopping_again_is_harmless(tmp_path, monkeypatch):
    _fake_perf(tmp_path, monkeypatch, FAKE)
    out = tmp_path / "warm.perf"

    async def go():
        proc = await lab.record_machine(str(out))
        assert proc.returncode is None and not out.exists()
        await lab.stop_recording(proc)
        assert proc.returncode == 0 and out.read_text() == "recorded\n"
        await lab.stop_recording(proc)          # the workload's finally: already stopped
        await lab.stop_recording(None)          # no --perf
    asyncio.run(go())


def test_a_perf_that_cannot_record_is_one_error(tmp_path, monkeypatch):
    _fake_perf(tmp_path, monkeypatch, "#!/bin/sh\nexit 1\n")
    with pytest.raises(LabError, match="perf record exited with 1"):
        asyncio.run(lab.record_machine(str(tmp_path / "x.perf")))
