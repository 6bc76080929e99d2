"""`kctl create configmap` and `kctl create secret generic|tls|docker-registry`,
as kubectl builds them (k8s.io/kubectl/pkg/cmd/create/create_configmap.go,
create_secret.go, create_secret_tls.go, create_secret_docker.go).

Sources, as in kubectl:
* `--from-literal=key=value` (the value may contain `=`);
* `--from-file=path` (key: the file's base name), `--from-file=key=path`, or
  a directory (each regular file in it whose name is a valid key);
* `--from-env-file=path`: `KEY=VALUE` lines, `#` comments and blank lines
  skipped, a bare `KEY` takes its value from kctl's environment; it cannot
  be combined with the other two.
A ConfigMap keeps UTF-8 content in `data` and anything else in `binaryData`;
a Secret keeps bytes in `data` (base64 in YAML/JSON). A key twice, or a key
that is not a valid config key, is refused with kubectl's message before
anything is sent. `tls` checks that the certificate and key are PEM and
belong together (the `cryptography` package); `docker-registry` writes the
`.dockerconfigjson` kubectl writes. `--dry-run=client -o yaml` prints the
object instead of creating it (kubectlish/generators.py).
"""
from __future__ import annotations

import base64
import json
import os
import pathlib

import click

from kubectlish.common import Ctx, Failed, run
from kubectlish.generators import _common, _create_or_print
from machinery.validation.common import is_env_var_name
from machinery.validation.config import is_config_map_key

DEFAULT_REGISTRY = "https://index.docker.io/v1/"


def _add(store: dict, key: str, value: bytes, kind: str, name: str) -> None:
    problems = is_config_map_key(key)
    if problems:
        raise Failed(f'error: "{key}" is not a valid key name for a {kind}: {"; ".join(problems)}')
    if key in store:
        raise Failed(f'error: cannot add key "{key}", another key by that name already exists in Data '
                     f'for {kind} "{name}"')
    store[key] = value


def _read(path: pathlib.Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Failed(f"error: error reading {path}: {exc.strerror.lower() if exc.strerror else exc}") from exc


def collect(literals, files, env_file, kind: str, name: str) -> dict[str, bytes]:
    """Every key and value from the --from-* sources, in kubectl's order
    (files, then literals; or the env file alone)."""
    if env_file and (literals or files):
        raise Failed("error: from-env-file cannot be combined with from-file or from-literal")
    out: dict[str, bytes] = {}
    for spec in files:
        key, sep, path = spec.partition("=")
        if not sep:
            key, path = "", spec
        elif not key:
            raise Failed(f"error: key names or file paths cannot be empty: {spec!r}")
        p = pathlib.Path(path)
        if p.is_dir():
            if key:
                raise Failed(f"error: cannot give a key name for a directory path: {spec!r}")
            for child in sorted(p.iterdir()):
                if child.is_file() and not is_config_map_key(child.name):
                    _add(out, child.name, _read(child), kind, name)
        else:
            _add(out, key or p.name, _read(p), kind, name)
    for spec in literals:
        key, sep, value = spec.partition("=")
        if not sep:
            raise Failed(f"error: invalid literal source {spec}, expected key=value")
        _add(out, key, value.encode(), kind, name)
    if env_file:
        for key, value in env_lines(_read(pathlib.Path(env_file)).decode(errors="replace"), env_file):
            _add(out, key, value.encode(), kind, name)
    return out


def env_lines(text: str, source: str) -> list[tuple[str, str]]:
    """kubectl's env file: KEY=VALUE per line, leading whitespace ignored."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        problems = is_env_var_name(key)
        if problems:
            raise Failed(f'error: "{key}" is not a valid key name: {"; ".join(problems)}')
        if not sep:
            if key not in os.environ:
                continue                                    # kubectl skips unset variables
            value = os.environ[key]
        out.append((key, value))
    return out


def _metadata(name: str) -> dict:
    return {"name": name}


async def _build_and_create(ctx: Ctx, build, dry_run: str, output: str | None):
    """Build inside run(), so that a bad source ends as one kubectl-style error line."""
    return await _create_or_print(ctx, build(), dry_run, output)


# ----------------------------------------------------------------- configmap

@click.command("configmap")
@click.argument("name")
@click.option("--from-literal", "literals", multiple=True, help="key=value (repeatable).")
@click.option("--from-file", "files", multiple=True, help="[key=]path: a file or a directory (repeatable).")
@click.option("--from-env-file", "env_file", default=None, help="A file of KEY=VALUE lines.")
@_common
@click.pass_obj
def create_configmap_cmd(ctx: Ctx, name, literals, files, env_file, dry_run, output):
    """Create a configmap from files, directories, literal values or an env file."""
    run(ctx, _build_and_create, lambda: configmap_manifest(name, literals, files, env_file), dry_run, output)


def configmap_manifest(name, literals, files, env_file) -> dict:
    values = collect(literals, files, env_file, "ConfigMap", name)
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(name)}
    data, binary = {}, {}
    for k, v in values.items():
        try:
            data[k] = v.decode("utf-8")
        except UnicodeDecodeError:
            binary[k] = base64.b64encode(v).decode()
    if data:
        manifest["data"] = data
    if binary:
        manifest["binaryData"] = binary
    return manifest


# -------------------------------------------------------------------- secret

def _secret_manifest(name: str, type_: str, values: dict[str, bytes]) -> dict:
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": _metadata(name), "type": type_}
    if values:
        manifest["data"] = {k: base64.b64encode(v).decode() for k, v in values.items()}
    return manifest


@click.group("secret")
def create_secret_group():
    """Create a secret: generic, tls or docker-registry."""


@create_secret_group.command("generic")
@click.argument("name")
@click.option("--from-literal", "literals", multiple=True, help="key=value (repeatable).")
@click.option("--from-file", "files", multiple=True, help="[key=]path: a file or a directory (repeatable).")
@click.option("--from-env-file", "env_file", default=None, help="A file of KEY=VALUE lines.")
@click.option("--type", "type_", default="Opaque", help="The type of the secret (default Opaque).")
@_common
@click.pass_obj
def create_secret_generic_cmd(ctx: Ctx, name, literals, files, env_file, type_, dry_run, output):
    """Create a secret from files, directories, literal values or an env file."""
    run(ctx, _build_and_create,
        lambda: _secret_manifest(name, type_, collect(literals, files, env_file, "Secret", name)), dry_run, output)


def check_key_pair(cert: bytes, key: bytes) -> None:
    """tls.X509KeyPair's checks: PEM certificate and key whose public keys match."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    try:
        certificate = x509.load_pem_x509_certificate(cert)
    except ValueError as exc:
        raise Failed("error: failed to load key pair tls: failed to find any PEM data in certificate input") \
            from exc
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise Failed("error: failed to load key pair tls: failed to find any PEM data in key input") from exc
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if certificate.public_key().public_bytes(*fmt) != private.public_key().public_bytes(*fmt):
        raise Failed("error: failed to load key pair tls: private key does not match public key")


@create_secret_group.command("tls")
@click.argument("name")
@click.option("--cert", required=True, help="Path to the PEM encoded public key certificate.")
@click.option("--key", "key_path", required=True, help="Path to the PEM encoded private key.")
@_common
@click.pass_obj
def create_secret_tls_cmd(ctx: Ctx, name, cert, key_path, dry_run, output):
    """Create a TLS secret from a certificate and its private key."""
    run(ctx, _build_and_create, lambda: tls_manifest(name, cert, key_path), dry_run, output)


def tls_manifest(name: str, cert: str, key_path: str) -> dict:
    cert_bytes, key_bytes = _read(pathlib.Path(cert)), _read(pathlib.Path(key_path))
    check_key_pair(cert_bytes, key_bytes)
    return _secret_manifest(name, "kubernetes.io/tls", {"tls.crt": cert_bytes, "tls.key": key_bytes})


def docker_config_json(server: str, username: str, password: str, email: str = "") -> bytes:
    """kubectl's DockerConfigJSON: {"auths": {server: {username, password, email?, auth}}}."""
    entry = {"username": username, "password": password}
    if email:
        entry["email"] = email
    entry["auth"] = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {server: entry}}, separators=(",", ":")).encode()


@create_secret_group.command("docker-registry")
@click.argument("name")
@click.option("--docker-server", default=DEFAULT_REGISTRY, help="Server location for the registry.")
@click.option("--docker-username", default="", help="Username for registry authentication.")
@click.option("--docker-password", default="", help="Password for registry authentication.")
@click.option("--docker-email", default="", help="Email for the registry.")
@click.option("--from-file", "files", multiple=True, help="[key=]path of a .dockerconfigjson file.")
@_common
@click.pass_obj
def create_secret_docker_registry_cmd(ctx: Ctx, name, docker_server, docker_username, docker_password,
                                      docker_email, files, dry_run, output):
    """Create a secret for use with a Docker registry (imagePullSecrets)."""
    run(ctx, _build_and_create, lambda: docker_registry_manifest(
        name, docker_server, docker_username, docker_password, docker_email, files), dry_run, output)


def docker_registry_manifest(name, docker_server, docker_username, docker_password, docker_email, files) -> dict:
    if files:
        values = collect((), files, None, "Secret", name)
    else:
        if not docker_username:
            raise Failed("error: username must be specified for --docker-username")
        if not docker_password:
            raise Failed("error: password must be specified for --docker-password")
        values = {".dockerconfigjson": docker_config_json(docker_server, docker_username, docker_password,
                                                          docker_email)}
    return _secret_manifest(name, "kubernetes.io/dockerconfigjson", values)
