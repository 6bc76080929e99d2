"""nodeagent/statedir.py without mounting anything: a directory that is a
mount point already is used as it is; where no tmpfs can be mounted, the
plain directory is used and the agent says so."""
import ctypes
import errno
import logging

from nodeagent import statedir


class _NoMount:
    def __init__(self):
        self.calls = []

    def mount(self, *args):
        self.calls.append(args)
        ctypes.set_errno(errno.EPERM)
        return -1


def test_a_mount_point_is_reused(monkeypatch, tmp_path):
    fake = _NoMount()
    monkeypatch.setattr(statedir, "_libc", fake)
    monkeypatch.setattr(statedir.os.path, "ismount", lambda p: True)
    assert statedir.ensure_tmpfs(str(tmp_path / "run")) == str(tmp_path / "run")
    assert fake.calls == []


def test_without_a_tmpfs_the_directory_is_used_with_a_warning(monkeypatch, tmp_path, caplog):
    fake = _NoMount()
    monkeypatch.setattr(statedir, "_libc", fake)
    monkeypatch.setattr(statedir.os.path, "ismount", lambda p: False)
    with caplog.at_level(logging.WARNING, logger="nodeagent.statedir"):
        path = statedir.ensure_tmpfs(str(tmp_path / "run"))
    assert path == str(tmp_path / "run") and (tmp_path / "run").is_dir()
    assert [c[2] for c in fake.calls] == [b"tmpfs"] and b"size=" in fake.calls[0][4]
    assert "cannot mount a tmpfs there (Operation not permitted)" in caplog.text
