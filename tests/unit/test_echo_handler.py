"""The kctl/echo image's request handler (deploy/images.py ECHO_HANDLER), run
with the busybox shell the image carries: every path, `/burn` (the HPA
walkthrough's CPU-burning request) included, is answered with the pod name."""
import shutil
import subprocess

import pytest

from deploy.images import BUSYBOX, ECHO_HANDLER

pytestmark = pytest.mark.skipif(shutil.which(BUSYBOX) is None, reason=f"{BUSYBOX} missing")


def exchange(path: str) -> str:
    req = f"GET {path} HTTP/1.1\r\nHost: php-apache\r\nUser-Agent: Wget\r\n\r\n"
    res = subprocess.run([BUSYBOX, "sh", "-c", ECHO_HANDLER], input=req.encode(), capture_output=True,
                         timeout=30, env={"HOSTNAME": "php-apache-7d4f", "PATH": "/bin:/usr/bin"})
    assert res.returncode == 0, res.stderr
    return res.stdout.decode()


@pytest.mark.parametrize("path", ["/", "/burn", "/burn?x=1", "/anything"])
def test_every_path_is_answered_with_the_pod_name(path):
    head, body = exchange(path).split("\r\n\r\n", 1)
    assert head.splitlines()[0] == "HTTP/1.0 200 OK"
    assert "Content-Length: 16" in head and body == "php-apache-7d4f\n"
