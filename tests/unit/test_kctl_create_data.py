"""`kctl create configmap|secret generic|tls|docker-registry` with
`--dry-run=client -o yaml|json` (no server needed): the objects kubectl
builds, its key naming and its error messages."""
import base64
import datetime
import json

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubectlish.main import cli


def kctl(*args, env=None):
    r = CliRunner().invoke(cli, ["--server", "127.0.0.1:1", *args], catch_exceptions=False, env=env)
    return r.exit_code, r.stdout, r.stderr


def dry(*args, env=None):
    code, out, err = kctl(*args, "--dry-run=client", "-o", "json", env=env)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "app.properties").write_text("color=blue\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\x00\xff")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_text("A")
    (tmp_path / "dir" / "b.txt").write_text("B")
    (tmp_path / "dir" / "not a key").write_text("skipped")
    (tmp_path / "dir" / "sub").mkdir()
    (tmp_path / "env").write_text("# settings\n\nMODE=fast\n  URL=http://x/?a=b\nFROM_ENV\nUNSET_ONE\n")
    return tmp_path


def test_configmap_from_files_literals_and_directories(files):
    cm = dry("create", "configmap", "settings", f"--from-file={files}/app.properties",
             f"--from-file=logo={files}/logo.png", f"--from-file={files}/dir", "--from-literal=mode=a=b")
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "settings"
    assert cm["data"] == {"app.properties": "color=blue\n", "a.txt": "A", "b.txt": "B", "mode": "a=b"}
    assert cm["binaryData"] == {"logo": base64.b64encode(b"\x89PNG\x00\xff").decode()}


def test_configmap_from_env_file_and_short_name(files):
    cm = dry("create", "cm", "env", f"--from-env-file={files}/env", env={"FROM_ENV": "inherited"})
    assert cm["data"] == {"MODE": "fast", "URL": "http://x/?a=b", "FROM_ENV": "inherited"}


@pytest.mark.parametrize("args,message", [
    (("--from-literal=novalue",), "error: invalid literal source novalue, expected key=value"),
    (("--from-literal=a=1", "--from-literal=a=2"),
     'error: cannot add key "a", another key by that name already exists in Data for ConfigMap "x"'),
    (("--from-literal=bad key=1",), 'error: "bad key" is not a valid key name for a ConfigMap: a valid config key'),
    (("--from-literal=a=1", "--from-env-file=/dev/null"),
     "error: from-env-file cannot be combined with from-file or from-literal"),
    (("--from-file=/nonexistent/file",), "error: error reading /nonexistent/file: no such file or directory"),
])
def test_configmap_errors_are_kubectls(args, message):
    code, out, err = kctl("create", "configmap", "x", *args, "--dry-run=client")
    assert code == 1 and out == "" and err.startswith(message), err


def test_secret_generic_is_base64_and_typed(files):
    s = dry("create", "secret", "generic", "db", "--from-literal=password=s3cr=t",
            f"--from-file=cfg={files}/app.properties", "--type=example.com/custom")
    assert s["type"] == "example.com/custom"
    assert {k: base64.b64decode(v) for k, v in s["data"].items()} == {"password": b"s3cr=t",
                                                                     "cfg": b"color=blue\n"}
    assert dry("create", "secret", "generic", "empty")["type"] == "Opaque"
    code, _, err = kctl("create", "secret", "generic", "x", "--from-literal=k=1", "--from-literal=k=2",
                        "--dry-run=client")
    assert code == 1 and 'already exists in Data for Secret "x"' in err


def test_secret_docker_registry_writes_kubectls_dockerconfigjson():
    s = dry("create", "secret", "docker-registry", "reg", "--docker-server=registry.lab:5000",
            "--docker-username=alice", "--docker-password=pw", "--docker-email=a@example.com")
    assert s["type"] == "kubernetes.io/dockerconfigjson"
    cfg = json.loads(base64.b64decode(s["data"][".dockerconfigjson"]))
    assert cfg == {"auths": {"registry.lab:5000": {"username": "alice", "password": "pw",
                                                    "email": "a@example.com",
                                                    "auth": base64.b64encode(b"alice:pw").decode()}}}
    code, _, err = kctl("create", "secret", "docker-registry", "reg", "--docker-password=pw", "--dry-run=client")
    assert code == 1 and err == "error: username must be specified for --docker-username\n"


def _pair(tmp_path, name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    c, k = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def test_secret_tls_checks_the_pair(tmp_path):
    crt, key = _pair(tmp_path, "web")
    _, other_key = _pair(tmp_path, "other")
    s = dry("create", "secret", "tls", "web-tls", f"--cert={crt}", f"--key={key}")
    assert s["type"] == "kubernetes.io/tls"
    assert base64.b64decode(s["data"]["tls.crt"]) == crt.read_bytes()
    assert base64.b64decode(s["data"]["tls.key"]) == key.read_bytes()
    code, _, err = kctl("create", "secret", "tls", "x", f"--cert={crt}", f"--key={other_key}", "--dry-run=client")
    assert code == 1 and err == "error: failed to load key pair tls: private key does not match public key\n"
    code, _, err = kctl("create", "secret", "tls", "x", f"--cert={key}", f"--key={key}", "--dry-run=client")
    assert code == 1 and "failed to find any PEM data in certificate input" in err


def test_dry_run_yaml_is_a_manifest_that_applies(files):
    code, out, _ = kctl("create", "configmap", "s", "--from-literal=a=1", "--dry-run=client", "-o", "yaml")
    assert code == 0 and yaml.safe_load(out) == {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"},
                                                 "metadata": {"name": "s", "namespace": "default"}}
    code, out, _ = kctl("create", "secret", "generic", "s", "--from-literal=a=1", "--dry-run=client")
    assert code == 0 and out == "secret/s created (dry run)\n"
