"""scripts/run-pytest.sh (what scripts/test.sh runs): pytest's exit code
unchanged, and a final block with the number of skipped tests and why."""
from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "run-pytest.sh"

SUITE = '''
import pytest

def test_ok():
    pass

@pytest.mark.parametrize("i", [1, 2])
def test_not_here(i):
    pytest.skip("no frobnicator on this machine")

@pytest.mark.skipif(True, reason="needs root")
def test_root():
    pass
'''


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120)


def test_skips_are_counted_and_explained_last(tmp_path):
    (tmp_path / "test_some.py").write_text(SUITE)
    res = run(tmp_path, str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    tail = res.stdout.rstrip().splitlines()[-3:]
    assert tail[0] == "==== skipped: 3 test(s), why: ===="
    assert sorted(line.split(None, 1)[0] for line in tail[1:]) == ["1", "2"]
    assert any(line.endswith("no frobnicator on this machine") for line in tail[1:]), tail
    assert any(line.endswith("needs root") for line in tail[1:]), tail


def test_exit_codes_pass_through(tmp_path):
    (tmp_path / "test_fail.py").write_text("def test_no():\n    assert False\n")
    res = run(tmp_path, str(tmp_path / "test_fail.py"))
    assert res.returncode == 1
    assert res.stdout.rstrip().splitlines()[-1] == "==== skipped: 0 test(s) ===="
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(tmp_path, str(empty)).returncode == 5    # no tests collected stays a failure
