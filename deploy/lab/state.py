"""The lab's state file: ``<state_dir>/state.json``.

Several processes touch it (``kctl lab up`` records the components it starts,
a test adds its own processes, ``kctl lab down`` reads it), so every
read-modify-write holds an exclusive ``flock`` on ``<state_dir>/.lock`` and the
new content is written to a temporary file and renamed over the old one: a
crash leaves either the old or the new state, never half a JSON document.

The state is a convenience, never the only record: ``lab_down`` also finds
everything by name prefix, netns inode and cgroup path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator

STATE_FILE = "state.json"
LOCK_FILE = ".lock"


class StateStore:
    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, STATE_FILE)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(self.directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict:
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError:
            # A corrupt file cannot come from our atomic writes; do not let
            # it block lab_down.
            return {}

    def load(self) -> dict:
        """A snapshot of the state ({} if there is none)."""
        if not os.path.isdir(self.directory):
            return {}
        with self._locked():
            return self._read()

    def update(self, fn: Callable[[dict], object]) -> dict:
        """Apply `fn` to the state in place under the lock; return the result."""
        with self._locked():
            state = self._read()
            fn(state)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(state, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            return state
