"""A child process for checks: its own session, its log in a file, stopped by PID.

Subclasses say what to run (`command()`) and when it is ready (`ready()`);
`start()` waits for readiness and fails with the log's tail if the process
exits or is not ready in time. `stop()` is SIGTERM, a bounded wait, then
SIGKILL — always to the PID we started, never by name.
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
import urllib.request

from deploy.registry import ephemeral_low, free_port  # noqa: F401 - the one free-port picker, re-exported

REPO = pathlib.Path(__file__).resolve().parent.parent


def python_env(**extra: str) -> dict:
    """os.environ with this checkout first on PYTHONPATH (for `python -m <component>`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _wait(pred, timeout: float, what: str, proc: "Process") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout}s:\n{proc.log_tail()}")


class Process:
    """A child process in its own session, logging to a file, stopped by PID."""

    def __init__(self, name: str, workdir: pathlib.Path):
        self.name = name
        self.workdir = pathlib.Path(workdir)
        self.log_path = self.workdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> "Process":
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> "Process":
        """Start the process without waiting for it to be ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                      start_new_session=True, env=self.env())
        log.close()
        return self

    def wait_ready(self, timeout: float = 30.0) -> "Process":
        _wait(self.ready, timeout, self.name, self)
        return self

    def env(self) -> dict:
        return python_env()

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """`sig` (SIGTERM), then SIGKILL after `timeout`, by PID."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        self.popen.wait()
        self.popen = None

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait()

    def restart(self, timeout: float = 30.0) -> "Process":
        self.stop()
        return self.start(timeout)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self):
        if self.popen is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class Command(Process):
    """Any program as a Process: `argv`, its environment (`env`, default
    os.environ), ready once `ready_url` answers HTTP 200 (at once without one)."""

    def __init__(self, name: str, workdir, argv: list[str], *, ready_url: str | None = None,
                 env: dict | None = None):
        super().__init__(name, workdir)
        self.argv, self.ready_url, self._env = list(argv), ready_url, env

    def command(self) -> list[str]:
        return self.argv

    def env(self) -> dict:
        return dict(os.environ) if self._env is None else self._env

    def ready(self) -> bool:
        if self.ready_url is None:
            return True
        with urllib.request.urlopen(self.ready_url, timeout=1) as r:  # noqa: S310 - a local address
            return r.status == 200
