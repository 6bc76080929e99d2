"""The suite's own set-up (tests/conftest.py): children of a run started with SIGINT
ignored (`scripts/run-pytest.sh &` from a non-interactive shell) must still get Ctrl-C, or
the kctl Ctrl-C tests (tests/integration/test_logs_exec.py) hang."""
from __future__ import annotations

import signal
import subprocess
import sys


def test_the_run_does_not_ignore_sigint_and_its_python_children_handle_it():
    assert signal.getsignal(signal.SIGINT) != signal.SIG_IGN
    out = subprocess.run([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT))"],
                         capture_output=True, text=True, check=True).stdout
    assert "default_int_handler" in out, out
