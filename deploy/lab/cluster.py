"""A whole cluster in a lab: the control plane (with the cluster DNS, kctl-dns)
in the root namespace bound to the lab's control-plane address -- or, with
``--control-planes N``, on N control-plane machines (controlplane.py) --, one
node agent per node namespace, a local registry with the lab's images, and a
kubeconfig for plain `kctl`. Agents are given every apiserver (a comma list,
machinery.client fails over between them).

`up()` is a straight line of steps, each printed as it goes; whatever fails
tears the lab down again (`lab_down`), so a failed `up` leaves nothing
behind. Independent slow steps overlap: the offline image build and registry
push run on a thread while etcd and the apiserver start; the images built
from Debian packages (deploy/debimages.py: redis, python, the guestbook;
minutes the first time, then cached) on another thread, joined last, and
when they fail the lab still comes up (busybox and kctl/echo work) with a
warning saying why. The components are
the console scripts next to the running interpreter (.venv/bin/kctl-*), each
supervised by the lab (PID + start time recorded, log under the state dir).

What a later command needs (apiserver addresses, each agent's argv so
start-agent/start-node can start it again) is kept in `cluster.json` in the
lab's state dir. The kubeconfig entries are kubeconfig.py's, the node faults
(kill-node, stop-agent, partition, ...) faults.py's; etcd's command line and
the image list are the cluster harness's (harness.etcd, harness.nodes),
the ones tests and benchmarks run; the control plane's PKI, argv and start
are controlplane.py's (its names are re-exported here).

Security: the lab has its own PKI (machinery.pki) in its state dir,
`pki/` (`pki_dir(name)`), made before anything starts and removed by `down`
with the state dir: the apiserver serves TLS with it (--cert-dir), the
scheduler, controller manager and kctl-dns connect with their own
certificates (--kubeconfig pki/<component>.conf), each node agent with its
node certificate (pki/nodes/NODE.conf, also its logs/exec serving
certificate), and the user's kubeconfig entry carries the CA and the admin
certificate (kubernetes-admin, system:masters). etcd stays plaintext: on
127.0.0.1 of the host with one control plane, on the machines' lab addresses
with several (reachable only from the lab's own namespaces); the Vagrant
set-up, where etcd is reached over a real network, uses TLS.

Every component is a unit of the lab's
supervisor (supervisor.py, started first): restarted with back-off when it
crashes, left stopped when a fault verb stopped it (units.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from deploy.lab import controlplane, naming, units
from deploy.lab.controlplane import (  # noqa: F401 - the lab's constants and PKI helpers, re-exported
    APISERVER_HTTP_PORT, APISERVER_PORT, CLUSTER_DOMAIN, CONTROLLER_FLAGS, DNS_METRICS_PORT, DNS_PORT, HPA_SYNC,
    METRICS_PORTS, NODE_GRACE, POD_EVICTION, SERVICE_CIDR, _bin, admin_credentials, control_plane_argv,
    dns_service_ip, make_pki, pki_dir, signing_flags)
from deploy.lab.kubeconfig import current_context, kubeconfig_path, remove_kubeconfig_entries, write_kubeconfig
from deploy.lab.naming import LabError
from deploy.lab.topology import Lab, LabSpec
from harness.nodes import IMAGES

REGISTRY_PORT = 5000
AGENT_PORT_METRICS = 10255
# The images built from Debian packages (deploy/debimages.py): the first build
# (three mmdebstrap runs) takes minutes, later ones come from the cache.
DEBIAN_IMAGES_TIMEOUT = 900
LAB_IMAGES = IMAGES  # offline image -> path in the registry (docker.io mirror layout)


def cluster_file(name: str) -> Path:
    return Path(naming.state_dir(name)) / "cluster.json"


def load_cluster(name: str) -> dict:
    try:
        return json.loads(cluster_file(name).read_text())
    except FileNotFoundError:
        raise LabError(f'lab "{name}" is not up (kctl lab up --name {name})') from None


def _save_cluster(name: str, info: dict) -> None:
    p = cluster_file(name)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, p)


def _wait(what: str, check, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - readiness probes fail until ready
            last_exc = exc
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what}"
                   + (f" (last error: {last_exc})" if last_exc else ""))


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - lab-local address
        return r.status == 200


def agent_argv(name: str, lab: Lab, node: str, apiserver: str, registry: str) -> list[str]:
    info = lab.node(node)
    return [
        _bin("kctl-nodeagent"),
        "--kubeconfig", os.path.join(pki_dir(name), "nodes", f"{node}.conf"),
        "--apiserver", apiserver,
        "--node-name", node,
        "--node-ip", info.ip,
        "--root-dir", info.data_dir,
        "--cgroup-parent", info.cgroup_parent,
        "--netns-prefix", info.pod_netns_prefix,
        "--registry-mirror", f"docker.io=http://{registry}",
        "--insecure-registry", registry,
        "--masquerade-cidr", str(lab.subnet),  # the control plane's rp_filter drops pod sources
        "--metrics-listen", f"{info.ip}:{AGENT_PORT_METRICS}",
        "--cluster-dns", dns_service_ip(), "--cluster-domain", CLUSTER_DOMAIN,
        "--node-labels", ",".join(f"{k}={v}" for k, v in info.labels),
    ]


def _push(registry: str, built: dict[str, str], images: dict[str, str]) -> None:
    """skopeo-copy each offline ref (built: ref -> OCI layout:tag) to its path in the lab registry."""
    import subprocess
    _wait("the lab registry", lambda: _http_ok(f"http://{registry}/v2/"), 15)
    # Two tags of one repository pushed at once upload the same blobs
    # concurrently, which registry 2.8 sometimes answers with a 500: the
    # first tag of each repository goes first, the other tags (blobs
    # already there) after it.
    first: dict[str, str] = {}
    for ref, dest in images.items():
        first.setdefault(dest.rpartition(":")[0], ref)
    waves = [[r for r in images if r in first.values()], [r for r in images if r not in first.values()]]
    for wave in waves:
        procs = [(ref, subprocess.Popen(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{built[ref]}",
             f"docker://{registry}/{images[ref]}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            for ref in wave]
        for ref, p in procs:
            _, err = p.communicate(timeout=300)
            if p.returncode != 0:
                raise LabError(f"pushing {ref} to the lab registry failed: {err.decode().strip()}")


def _images_to_registry(lab: Lab, registry: str, out: dict) -> None:
    """Build the offline images and push them to the lab registry (thread body)."""
    try:
        from deploy.images import build_images
        _push(registry, build_images(os.path.join(naming.data_dir(lab.name), "images")), LAB_IMAGES)
        out["images"] = sorted(LAB_IMAGES)
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        out["error"] = exc


def _debian_images_to_registry(registry: str, out: dict) -> None:
    """Build (first time) or find cached the images made from Debian packages
    (deploy/debimages.py, cache KCTL_IMAGE_CACHE) and push them (thread body)."""
    t0 = time.monotonic()
    try:
        from deploy.debimages import IMAGES as DEBIAN_IMAGES, build_debian_images
        _push(registry, build_debian_images(), DEBIAN_IMAGES)
        out["images"] = sorted(DEBIAN_IMAGES)
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        out["error"] = exc
    out["seconds"] = time.monotonic() - t0


def up(name: str = "kctl", nodes: int = 3, *, subnet: str | None = None, progress=print,
       timeout: float = 60.0, kubeconfig: str | None = None, control_planes: int = 1) -> dict:
    """Bring up a lab cluster; returns what cluster.json records. `control_planes`:
    1 (in the root netns), or an odd N > 1 (machines cp1..cpN, controlplane.py).

    The kubeconfig written is `kubeconfig`, else the first path of
    $KUBECONFIG, else ~/.kctl/config (its other entries are kept).
    """
    t0 = time.monotonic()

    def step(msg):
        progress(f"[{time.monotonic() - t0:5.1f}s] {msg}")

    if os.geteuid() != 0:
        raise LabError("kctl lab up needs root (it creates network namespaces and containers)")
    lab = Lab(LabSpec(name=name, nodes=nodes, subnet=subnet, control_planes=control_planes))
    if lab.exists():
        raise LabError(f'lab "{name}" is already up: `kctl lab status --name {name}`, '
                       f'or `kctl lab down --name {name}` first')
    lab.build()
    where = (", ".join(f"{m.name} {m.ip}" for m in lab.machines) + f", host {lab.cp_address}" if lab.machines
             else f"control plane {lab.cp_address}")
    step(f"network {lab.subnet}: {where}, " + ", ".join(f"{n.name} {n.ip}" for n in lab.nodes))
    try:
        cp = lab.cp_address
        registry = f"{cp}:{REGISTRY_PORT}"
        state, data = naming.state_dir(name), naming.data_dir(name)
        store = make_pki(lab)
        creds = admin_credentials(name)
        step(f"PKI in {store.dir} (CA {pki_hash(store)})")

        # Registry + images on a thread, while etcd and the apiserver start.
        from deploy.registry import CONFIG
        reg_cfg = os.path.join(state, "registry.yml")
        Path(reg_cfg).write_text(CONFIG.format(log_level="warn", storage=os.path.join(data, "registry"),
                                               addr=registry, token=os.urandom(8).hex()))
        units.launch(lab)
        units.add(lab, "registry", ["/usr/bin/docker-registry", "serve", reg_cfg])
        image_result: dict = {}
        images = threading.Thread(target=_images_to_registry, args=(lab, registry, image_result), daemon=True)
        images.start()
        debian_result: dict = {}
        debian = threading.Thread(target=_debian_images_to_registry, args=(registry, debian_result), daemon=True)
        debian.start()

        probes = SimpleNamespace(http_ok=_http_ok, api_ready=lambda server: _api_ready(server, creds))
        cpinfo = controlplane.start(lab, step, _wait, probes)
        servers = ",".join(cpinfo["apiservers"])
        step("scheduler, controller-manager and cluster DNS started "
             f"(node grace {NODE_GRACE:g}s, pod eviction after {POD_EVICTION:g}s more)")

        images.join(timeout=120)
        if "error" in image_result:
            raise image_result["error"]
        step(f"registry on {registry} serving " + ", ".join(image_result.get("images", [])))

        _service_routes(lab)
        agents = {}
        for n in lab.nodes:
            argv = agent_argv(name, lab, n.name, servers, registry)
            agents[n.name] = argv
            units.add(lab, f"agent-{n.name}", argv, node=n.name)
        info = {"name": name, "registry": registry, **cpinfo, "agents": agents}
        _save_cluster(name, info)
        info["previous_context"] = current_context(kubeconfig_path(kubeconfig))  # `down` gives it back
        info["kubeconfig"] = write_kubeconfig(name, servers, kubeconfig, credentials=creds,
                                              http=f"https://{lab.cp_addresses[0]}:{APISERVER_HTTP_PORT}")
        _save_cluster(name, info)
        step(f"node agents started; kubeconfig {info['kubeconfig']} (context kctl-lab-{name})")

        for addr in lab.cp_addresses:
            _wait(f"cluster DNS on {addr}", lambda a=addr: dns_answers(a), 20)
        step(f"cluster DNS on {', '.join(lab.cp_addresses)} port {DNS_PORT} behind kube-system/kube-dns "
             f"{dns_service_ip()}")
        _wait(f"{nodes} Ready node(s)", lambda: _ready_nodes(servers, creds) >= nodes, timeout, interval=0.2)
        step(f"{nodes} node(s) Ready and schedulable")
        if debian.is_alive():
            from deploy.debimages import CACHE
            step(f"building the images from Debian packages (mmdebstrap; the first time takes minutes, "
                 f"then they come from {CACHE})")
        debian.join(timeout=DEBIAN_IMAGES_TIMEOUT)
        if "error" in debian_result or debian.is_alive():
            # The lab works without them (busybox, kctl/echo): say why they are missing.
            why = debian_result.get("error", f"still building after {DEBIAN_IMAGES_TIMEOUT}s")
            step(f"warning: the images built from Debian packages are not served: {why}")
        else:
            step(f"registry also serves {', '.join(debian_result['images'])} "
                 f"(Debian packages, {debian_result['seconds']:.1f}s)")
        return info
    except BaseException:
        progress("lab up failed; removing everything it created")
        down(name)
        raise


def _service_routes(lab: Lab) -> None:
    import subprocess

    for n in lab.nodes:
        res = subprocess.run(["ip", "-n", n.netns, "route", "replace", SERVICE_CIDR, "dev", n.iface],
                             capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            raise LabError(f"route {SERVICE_CIDR} in {n.netns}: {res.stderr.strip()}")


# --------------------------------------------------------- API probes

def _run(coro):
    import asyncio
    return asyncio.run(coro)


def dns_answers(cp: str, timeout: float = 1.0) -> bool:
    """kctl-dns on the control-plane address has synced (it knows the `kubernetes`
    Service) and registered itself (it knows its own kube-dns Service)."""
    import dns.message
    import dns.query
    import dns.rcode
    for name in ("kubernetes.default.svc.cluster.local.", "kube-dns.kube-system.svc.cluster.local."):
        reply = dns.query.udp(dns.message.make_query(name, "A"), cp, port=DNS_PORT, timeout=timeout)
        if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
            return False
    return True


def pki_hash(store) -> str:
    from machinery import pki
    return pki.ca_hash(store.ca.cert)


def _api_ready(server: str, credentials) -> bool:
    from machinery.client import Client

    async def probe():
        async with Client(server, timeout=2, credentials=credentials) as c:
            await c.version()
            return True
    return _run(probe())


def node_conditions(server: str, credentials=None) -> dict[str, str]:
    """{node name: Ready status ("True", "False", "Unknown")}."""
    return {name: st["ready"] for name, st in node_states(server, credentials).items()}


def node_states(server: str, credentials=None) -> dict[str, dict]:
    """{node name: {"ready": Ready status, "schedulable": no NoSchedule taint, not cordoned}}
    (as the lab's admin: `credentials`, default those of the default kubeconfig)."""
    from machinery.client import Client

    async def probe():
        async with Client(server, timeout=2, credentials=credentials) as c:
            nodes, _ = await c.list("Node")
            out = {}
            for n in nodes:
                ready = [c for c in n.status.conditions if c.type == "Ready"]
                blocked = n.spec.unschedulable or any(t.effect == "NoSchedule" for t in n.spec.taints)
                out[n.metadata.name] = {"ready": ready[0].status if ready else "Unknown",
                                        "schedulable": not blocked}
            return out
    return _run(probe())


def _ready_nodes(server: str, credentials=None) -> int:
    """Nodes that are Ready AND schedulable: right after registration the node
    lifecycle controller may still carry its not-ready taint on some of them,
    and a Deployment applied in that window would land on the others only."""
    return sum(1 for s in node_states(server, credentials).values() if s["ready"] == "True" and s["schedulable"])


# ------------------------------------------------------------- teardown

def down(name: str) -> dict:
    """`lab_down` plus the lab's kubeconfig entries; safe twice and after a crash."""
    from deploy.lab.cleanup import lab_down

    info: dict = {}
    with contextlib.suppress(LabError, ValueError, OSError):
        info = load_cluster(name)
    report = lab_down(name)
    kubeconfig = info.get("kubeconfig")
    if kubeconfig and remove_kubeconfig_entries(name, kubeconfig, info.get("previous_context", "")):
        report["kubeconfig"] = [kubeconfig]
    return report
