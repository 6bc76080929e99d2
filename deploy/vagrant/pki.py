"""The Vagrant cluster's PKI, made on the host before the VMs are
provisioned (a Vagrant trigger runs `python -m deploy.vagrant pki ...`),
then copied to each VM by Vagrant's file provisioner: each machine gets
only its own bundle, as kubeadm's "copy the certificates" step would.

    OUT/pki/                 the whole PKI (machinery.pki layout, + etcd/), kept on the host;
                             OUT/pki/admin.conf is the host's admin kubeconfig
    OUT/bundles/cp/          the control plane's: CA (and key: it signs), apiserver serving and
                             kubelet-client certificates, sa.key/sa.pub, etcd/ (its CA, server
                             certificate), apiserver-etcd-client, the component kubeconfigs
    OUT/bundles/workerN/     a worker's: ca.crt and node.conf (CN=system:node:workerN)

Running it again keeps everything made before (a re-provision does not
change any certificate); a new worker gets its certificate then.
"""
from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

from machinery import pki

CP_FILES = ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "apiserver-kubelet-client.crt",
            "apiserver-kubelet-client.key", "apiserver-etcd-client.crt", "apiserver-etcd-client.key",
            "sa.key", "sa.pub", "admin.conf", "scheduler.conf", "controller-manager.conf", "dns.conf",
            "etcd/ca.crt", "etcd/server.crt", "etcd/server.key")


def make(out: str | Path, cp_ip: str, workers: dict[str, str], service_cidr: str = "10.96.0.0/16") -> Path:
    out = Path(out)
    service_ip = str(ipaddress.ip_network(service_cidr, strict=False).network_address + 1)
    store = pki.PKI(out / "pki", pki.Endpoints(grpc=f"{cp_ip}:6443", https_url=f"https://{cp_ip}:8080", ips=[cp_ip],
                                               service_ip=service_ip, cluster_name="kctl-vagrant"))
    store.control_plane()
    store.etcd([cp_ip])
    _bundle(store, out / "bundles" / "cp", {f: f for f in CP_FILES})
    for name, ip in workers.items():
        store.node(name, ip)
        _bundle(store, out / "bundles" / name, {"ca.crt": "ca.crt", f"nodes/{name}.conf": "node.conf"})
    return out


def _bundle(store: pki.PKI, dest: Path, files: dict[str, str]) -> None:
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    for src, name in files.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(store.path(src), target)
