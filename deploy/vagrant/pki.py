"""The Vagrant cluster's PKI, made on the host before the VMs are
provisioned (the Vagrantfile runs `python -m deploy.vagrant pki ...` on
`up`, `provision` and `reload`), then copied to each VM by Vagrant's file
provisioner: each machine gets only its own bundle, as kubeadm's "copy the
certificates" step would.

    OUT/pki/                 the whole PKI (machinery.pki layout, + etcd/), kept on the host;
                             OUT/pki/admin.conf is the host's admin kubeconfig
    OUT/bundles/cp/          the control plane's: CA (and key: it signs), apiserver serving and
                             kubelet-client certificates, sa.key/sa.pub, etcd/ (its CA, server
                             certificate), apiserver-etcd-client, the component kubeconfigs
    OUT/bundles/workerN/     a worker's: ca.crt and node.conf (CN=system:node:workerN)

An HA control plane (control planes cp1..cpN): every apiserver's address is
a SAN of the one serving certificate, every kubeconfig lists every apiserver
(kctl.dev/grpc `servers`; its HTTPS `server:` is the first one's), and each
cpI gets the same bundle as `cp` but with its own etcd member certificate
as etcd/server.crt (OUT/pki/etcd/members/cpI.crt: CN and a SAN cpI, SANs loopback and
its address; server and client usage, so it is also the member's peer
certificate). sa.key and the CA key are the same on all of them: tokens and
certificates made by one control plane are good on every other.

Running it again keeps everything made before (a re-provision does not
change any certificate); a new worker gets its certificate then.
"""
from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

from machinery import pki
from machinery.errors import ConfigError

CP_FILES = ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "apiserver-kubelet-client.crt",
            "apiserver-kubelet-client.key", "apiserver-etcd-client.crt", "apiserver-etcd-client.key",
            "sa.key", "sa.pub", "admin.conf", "scheduler.conf", "controller-manager.conf", "dns.conf",
            "etcd/ca.crt", "etcd/server.crt", "etcd/server.key")


def control_planes(spec: str) -> dict[str, str]:
    """The CLI's control-plane argument: one address (the machine `cp`), or
    NAME=IP,NAME=IP,... (an HA control plane, in machine order)."""
    if "=" not in spec:
        return {"cp": _address(spec, spec)}
    cps: dict[str, str] = {}
    for pair in spec.split(","):
        name, sep, ip = pair.partition("=")
        if not (sep and name) or name in cps:
            raise ConfigError(f"control planes: {pair!r} is not NAME=IP with a NAME of its own (in {spec!r})")
        cps[name] = _address(ip, spec)
    if len(set(cps.values())) != len(cps):
        raise ConfigError(f"control planes: an address is given twice in {spec!r}")
    return cps


def _address(ip: str, spec: str) -> str:
    try:
        return str(ipaddress.IPv4Address(ip))
    except ValueError as exc:
        raise ConfigError(f"control planes: {ip!r} is not an IPv4 address (in {spec!r})") from exc


def make(out: str | Path, cps: str | dict[str, str], workers: dict[str, str],
         service_cidr: str = "10.96.0.0/16") -> Path:
    """The PKI and bundles; `cps`: the control planes {name: address} (a str: the one machine `cp`)."""
    out = Path(out)
    cps = {"cp": cps} if isinstance(cps, str) else dict(cps)
    ips = list(cps.values())
    service_ip = str(ipaddress.ip_network(service_cidr, strict=False).network_address + 1)
    store = pki.PKI(out / "pki", pki.Endpoints(grpc=",".join(f"{ip}:6443" for ip in ips),
                                               https_url=f"https://{ips[0]}:8080", ips=ips,
                                               service_ip=service_ip, cluster_name="kctl-vagrant"))
    store.control_plane()
    store.etcd(ips)
    for name, ip in cps.items():
        files = {f: f for f in CP_FILES}
        if len(cps) > 1:
            base = f"etcd/members/{name}"
            _etcd_member(store, base, name, ip)
            files.update({f"{base}.crt": "etcd/server.crt", f"{base}.key": "etcd/server.key"})
            del files["etcd/server.crt"], files["etcd/server.key"]
        _bundle(store, out / "bundles" / name, files)
    for name, ip in workers.items():
        store.node(name, ip)
        _bundle(store, out / "bundles" / name, {"ca.crt": "ca.crt", f"nodes/{name}.conf": "node.conf"})
    return out


def _etcd_member(store: pki.PKI, base: str, name: str, ip: str) -> None:
    """One etcd member's serving and peer certificate (kept if it exists), signed by etcd's CA."""
    if store.path(f"{base}.crt").exists() and store.path(f"{base}.key").exists():
        return
    cert, key = pki.CA.load(store.dir / "etcd").issue(name, server=True, client=True,
                                                      dns=["localhost", name], ips=["127.0.0.1", ip])
    pki.write_pair(store.dir, base, cert, key)


def _bundle(store: pki.PKI, dest: Path, files: dict[str, str]) -> None:
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    for src, name in files.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(store.path(src), target)
