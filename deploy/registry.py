"""A local OCI registry: Debian's docker-registry (distribution 2.8) with our config.

Debian's packaged config (/etc/docker/registry/config.yml) turns on htpasswd
auth and listens on :5000, so we never use it: `LocalRegistry` writes its own
config (no auth, filesystem storage in a directory we are given or own,
``http.addr`` = host:port, no debug listener) and starts the binary as a child
process. It binds 127.0.0.1 on a free port by default; the lab passes a
non-loopback address so node agents in other network namespaces can pull.

Readiness = ``GET /v2/`` answers 200 *with our own random token* in a
response header (configured via ``http.headers``): when the port was already
taken, another registry may answer, and that must not count as ours. Stopping sends SIGTERM to *our* PID, then
SIGKILL after a grace period; never anything by name. A port race (the free
port got taken between probing and binding) is retried with a new port.

``auth=(user, password)`` turns on htpasswd authentication (what a
registry that "requires a password" is): the password is bcrypt-hashed with
the system's libcrypt (``crypt_gensalt("$2b$")``, no extra package) into an
htpasswd file next to the config; readiness and pushes then authenticate.

``push(oci_ref, "name:tag")`` runs ``skopeo copy --dest-tls-verify=false
oci:DIR:TAG docker://HOST:PORT/name:tag``. Image manifests stay OCI; note that
registry 2.8 answers 404 for an OCI manifest unless the client's Accept lists
the OCI types (skopeo's does).
"""
from __future__ import annotations

import base64
import ctypes
import ctypes.util
import os
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from machinery.errors import HostError

REGISTRY_BIN = "/usr/bin/docker-registry"

CONFIG = """version: 0.1
log:
  level: {log_level}
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: {token}
  headers:
    X-Content-Type-Options: [nosniff]
    X-Kctl-Registry: [{token}]
"""


AUTH = """auth:
  htpasswd:
    realm: kctl-registry
    path: {htpasswd}
"""


class RegistryError(HostError):
    """The registry did not start or a push failed (the HostError family)."""


def htpasswd_line(user: str, password: str) -> str:
    """`user:$2b$...` — a bcrypt htpasswd entry, hashed by libcrypt (libxcrypt)."""
    name = ctypes.util.find_library("crypt")
    if name is None:
        raise RegistryError("libcrypt is not installed: cannot hash an htpasswd password")
    lib = ctypes.CDLL(name)
    lib.crypt_gensalt.restype = lib.crypt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2b$", 10, None, 0)
    hashed = lib.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise RegistryError("libcrypt cannot make bcrypt hashes")
    return f"{user}:{hashed.decode()}"


def ephemeral_low() -> int:
    """The first port the kernel gives outgoing connections (ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on `host` below the kernel's ephemeral range, so that no
    outgoing connection of another process can take it between this check and
    the bind of the process it is for (a port the kernel hands out with
    bind(0) is in that range: etcd once failed 'address already in use' on
    one). The lab and the test harness both pick their ports here."""
    hi = ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, hi - 12_000), hi)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:      # that range is full: any free one
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalRegistry:
    """Run docker-registry on host:port with storage in storage_dir.

    ``port=0`` picks a free port; ``storage_dir=None`` uses a temp dir that is
    removed on stop. Use as a context manager or call start()/stop().
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, storage_dir: str | None = None,
                 binary: str = REGISTRY_BIN, skopeo: str = "skopeo", log_level: str = "warn",
                 auth: tuple[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        self._want_port = port
        self.binary = binary
        self.skopeo = skopeo
        self.log_level = log_level
        self._own_storage = storage_dir is None
        self.storage_dir = storage_dir
        self._workdir: str | None = None
        self.proc: subprocess.Popen | None = None
        self._token = secrets.token_hex(8)
        self.auth = auth

    # -- addresses --------------------------------------------------------
    @property
    def address(self) -> str:
        """host:port as used in image references (e.g. 127.0.0.1:5000)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log_path(self) -> str | None:
        return os.path.join(self._workdir, "registry.log") if self._workdir else None

    # -- lifecycle --------------------------------------------------------
    def start(self, timeout: float = 15.0) -> "LocalRegistry":
        if self.proc is not None:
            return self
        self._workdir = tempfile.mkdtemp(prefix="kctl-registry-")
        if self.storage_dir is None:
            self.storage_dir = os.path.join(self._workdir, "storage")
        os.makedirs(self.storage_dir, exist_ok=True)
        try:
            for attempt in range(5):
                self.port = self._want_port or free_port(self.host)
                if self._spawn_and_wait(timeout):
                    return self
                if self._want_port:
                    break
            raise RegistryError(f"docker-registry did not start on {self.address}: {self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _spawn_and_wait(self, timeout: float) -> bool:
        config = os.path.join(self._workdir, "config.yml")
        with open(config, "w") as f:
            f.write(CONFIG.format(log_level=self.log_level, storage=self.storage_dir, addr=self.address,
                                  token=self._token))
            if self.auth:
                htpasswd = os.path.join(self._workdir, "htpasswd")
                with open(htpasswd, "w") as h:
                    h.write(htpasswd_line(*self.auth) + "\n")
                f.write(AUTH.format(htpasswd=htpasswd))
        headers = {}
        if self.auth:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([self.binary, "serve", config], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()
        probe_host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None  # exited (port taken?): caller may retry
                return False
            try:
                req = urllib.request.Request(f"http://{probe_host}:{self.port}/v2/", headers=headers)
                with urllib.request.urlopen(req, timeout=1) as resp:
                    if resp.status == 200 and resp.headers.get("X-Kctl-Registry") == self._token:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self._kill()
        return False

    def _kill(self, grace: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-2000:].decode(errors="replace").strip()
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        self._kill()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._own_storage:
            self.storage_dir = None

    def __enter__(self) -> "LocalRegistry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- content ----------------------------------------------------------
    def push(self, oci_layout_ref: str, name_tag: str, timeout: float = 120.0) -> str:
        """Copy an OCI layout image ("DIR:TAG" or "oci:DIR:TAG") to name:tag here.

        Returns the pushed reference "HOST:PORT/name:tag".
        """
        if self.proc is None:
            raise RegistryError("registry is not running")
        src = oci_layout_ref if oci_layout_ref.startswith(("oci:", "oci-archive:")) else f"oci:{oci_layout_ref}"
        dest = f"{self.address}/{name_tag}"
        creds = [f"--dest-creds={':'.join(self.auth)}"] if self.auth else []
        res = subprocess.run([self.skopeo, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", *creds,
                              src, f"docker://{dest}"], capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RegistryError(f"skopeo copy {src} -> {dest} failed: {res.stderr.strip()}")
        return dest
