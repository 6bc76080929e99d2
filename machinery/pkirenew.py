"""Renewing the cert dir's certificates: `kctl pki renew NAME|all`, what
`kubeadm certs renew` does.

kubeadm renews a certificate from the one already there: same subject, same
SANs, same usages, a new validity from the CA on disk, whatever the old
expiry; a kubeconfig's embedded client certificate is renewed in place
(server, CA and everything else kept). kctl does the same and also gives
each renewed certificate a new private key (the files are written anyway;
a key that may have leaked then dies with its certificate).

Names, as kubeadm spells them (the files under the cert dir):

    admin.conf scheduler.conf controller-manager.conf dns.conf   kubeconfigs (embedded certificate)
    apiserver apiserver-kubelet-client                           NAME.crt/.key, cluster CA
    apiserver-etcd-client etcd/server                            NAME.crt/.key, etcd CA (etcd/ca.*)
    nodes/NODE.conf                                              a node's kubeconfig (and nodes/NODE.crt/.key)

`all` renews every one of them that exists (nodes excepted: a node renews its
own certificate with a CSR, machinery/certmanager.py). Every file is written
atomically (temporary file + rename), key before certificate, so a reader
sees the old pair, then a mismatched pair it must refuse
(machinery/certreload.py does), then the new pair: never half a file.

Running components need no restart: the scheduler, the controller manager
and kctl-dns re-read their kubeconfig, the apiserver and the node agents
their serving certificate files (machinery/certreload.py). The CA itself
is not renewed here (kubeadm does not either).
"""
from __future__ import annotations

import base64
import datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from machinery import kubeconfig as kc, pki
from machinery.errors import ConfigError

KUBECONFIGS = tuple(pki.COMPONENTS)
PAIRS = {"apiserver": "", "apiserver-kubelet-client": "", "apiserver-etcd-client": "etcd", "etcd/server": "etcd"}


def reissue(ca: pki.CA, old: x509.Certificate, lifetime: datetime.timedelta) -> tuple[x509.Certificate, object]:
    """A certificate like `old` (subject, SANs, client/server usage) from `ca`, valid for `lifetime`, new key."""
    cn, orgs = pki.subject(old)
    try:
        usages = old.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    dns, ips = pki.sans(old)
    return ca.issue(cn, orgs, client=ExtendedKeyUsageOID.CLIENT_AUTH in usages,
                    server=ExtendedKeyUsageOID.SERVER_AUTH in usages, dns=sorted(dns), ips=sorted(ips),
                    days=lifetime / datetime.timedelta(days=1))


def renew_pair(cert_dir, base: str, ca: pki.CA, lifetime: datetime.timedelta) -> x509.Certificate:
    """BASE.crt/.key renewed from their current certificate."""
    crt = Path(cert_dir) / f"{base}.crt"
    try:
        old = pki.load_cert(crt.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot renew {base}: {crt}: {exc.strerror}") from exc
    cert, key = reissue(ca, old, lifetime)
    pki.write_pair(crt.parent, Path(base).name, cert, key)
    return cert


def _user_entry(doc: dict, path) -> dict:
    ctx_name = doc.get("current-context")
    contexts = kc.named(doc.get("contexts"), "contexts", path)
    users = doc.get("users") or []
    user_name = (contexts.get(ctx_name) or {}).get("user") if ctx_name else (users[0].get("name") if users else None)
    for u in users:
        if isinstance(u, dict) and u.get("name") == user_name:
            return u.setdefault("user", {})
    raise ConfigError(f"{path}: the current context has no user to renew")


def renew_kubeconfig(path, ca: pki.CA, lifetime: datetime.timedelta) -> x509.Certificate:
    """The kubeconfig's client certificate renewed in place (embedded as
    client-certificate-data/client-key-data; the rest of the file is kept)."""
    path = Path(path)
    doc = kc.read(path)
    user = _user_entry(doc, path)
    creds = kc.select(path).credentials
    if not creds.cert_pem:
        raise ConfigError(f"{path}: the current user has no client certificate to renew")
    cert, key = reissue(ca, pki.load_cert(creds.cert_pem), lifetime)
    for field in ("client-certificate", "client-key"):
        user.pop(field, None)
    user["client-certificate-data"] = base64.b64encode(pki.cert_pem(cert)).decode()
    user["client-key-data"] = base64.b64encode(pki.key_pem(key)).decode()
    pair = path.with_suffix("")                       # nodes/NODE.conf comes with nodes/NODE.crt/.key
    if pair.with_suffix(".crt").exists() and pair.with_suffix(".key").exists():
        pki.write_pair(pair.parent, pair.name, cert, key)
    pki._write(path, kc.dump(doc), private=True)
    return cert


def names(cert_dir) -> list[str]:
    """What `all` renews: every known kubeconfig and pair present in cert_dir."""
    d = Path(cert_dir)
    return [n for n in KUBECONFIGS if (d / n).exists()] + [n for n in PAIRS if (d / f"{n}.crt").exists()]


def check_name(name: str) -> str:
    """"kubeconfig" or "pair" for a name renew() knows, else a ConfigError listing them."""
    if name.endswith(".conf") and (name in KUBECONFIGS or (name.startswith("nodes/") and name.count("/") == 1)):
        return "kubeconfig"
    if name in PAIRS:
        return "pair"
    known = ", ".join([*KUBECONFIGS, *PAIRS, "nodes/NODE.conf", "all"])
    raise ConfigError(f'unknown certificate "{name}": must be one of {known}')


def renew(cert_dir, name: str, lifetime: datetime.timedelta) -> tuple[str, x509.Certificate]:
    """Renew one name (see the module docstring); (the file written, its new certificate)."""
    d = Path(cert_dir)
    if lifetime <= datetime.timedelta(0):
        raise ConfigError(f"the lifetime of a renewed certificate must be positive, got {lifetime}")
    if check_name(name) == "kubeconfig":
        return str(d / name), renew_kubeconfig(d / name, pki.CA.load(d), lifetime)
    ca_dir = d / PAIRS[name] if PAIRS[name] else d
    return str(d / f"{name}.crt"), renew_pair(d, name, pki.CA.load(ca_dir), lifetime)
