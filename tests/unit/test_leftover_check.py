"""The session-end leftover check (tests/leftovers.py, conftest.py): a run
whose test leaves a kctl mount behind fails and names it; what was there
before the run is not reported."""
import ctypes
import os
import textwrap

import pytest

from tests import leftovers

pytest_plugins = ["pytester"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root)")
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(path) -> None:
    os.makedirs(path, exist_ok=True)
    assert _libc.mount(b"kctl-run", str(path).encode(), b"tmpfs", 0, b"size=1m") == 0, os.strerror(ctypes.get_errno())


@needs_root
def test_a_new_mount_is_reported_and_an_old_one_is_not(tmp_path):
    _mount(tmp_path / "old")
    try:
        before = leftovers.snapshot()
        assert f"mount {tmp_path / 'old'} (tmpfs)" in before
        _mount(tmp_path / "new")
        assert leftovers.new_since(before) == [f"mount {tmp_path / 'new'} (tmpfs)"]
    finally:
        for d in ("new", "old"):
            _libc.umount2(str(tmp_path / d).encode(), 2)
    assert leftovers.new_since(before) == []


@needs_root
def test_a_run_that_leaves_a_mount_fails(pytester, tmp_path):
    pytester.makeconftest("from tests.conftest import pytest_sessionstart, pytest_sessionfinish\n")
    leak = tmp_path / "leak"
    pytester.makepyfile(textwrap.dedent(f"""
        import ctypes, os
        def test_leaks():
            os.makedirs({str(leak)!r}, exist_ok=True)
            assert ctypes.CDLL(None).mount(b"kctl-run", {str(leak)!r}.encode(), b"tmpfs", 0, b"size=1m") == 0
    """))
    try:
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    finally:
        _libc.umount2(str(leak).encode(), 2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*left on the machine by this run: 1*", f"mount {leak} (tmpfs)"])
    result.assert_outcomes(passed=1)
