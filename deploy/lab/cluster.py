"""A whole cluster in a lab: the control plane in the root namespace bound to
the lab's control-plane address, one node agent per node namespace, a local
registry with the lab's images, and a kubeconfig for plain `kctl`.

`up()` is a straight line of steps, each printed as it goes; whatever fails
tears the lab down again (`lab_down`), so a failed `up` leaves nothing
behind. Independent slow steps overlap: the offline image build and registry
push run on a thread while etcd and the apiserver start. The components are
the console scripts next to the running interpreter (.venv/bin/kctl-*), each
supervised by the lab (PID + start time recorded, log under the state dir).

What a later command needs (apiserver address, each agent's argv so
start-agent/start-node can start it again) is kept in `cluster.json` in the
lab's state dir.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from deploy.lab import naming
from deploy.lab.naming import LabError
from deploy.lab.topology import Lab, LabSpec

APISERVER_PORT = 6443
APISERVER_HTTP_PORT = 8080   # the Kubernetes HTTP API, for kubectl (kubeconfig `server`)
# Service ClusterIPs (the apiserver's default, spelled out). Node namespaces
# have no default route (topology.py), and a locally generated packet needs a
# route BEFORE the proxy's nat OUTPUT rule can DNAT it: each node netns gets
# an on-link route for this range via its lab interface, so `kctl lab exec
# NODE -- wget http://CLUSTER-IP/` works as on a real node. A VIP without
# endpoints then dies on the lab bridge (unanswered ARP), never leaves the lab.
SERVICE_CIDR = "10.96.0.0/16"
REGISTRY_PORT = 5000
METRICS_PORTS = {"apiserver": 9464, "scheduler": 10259, "controller-manager": 10257}
AGENT_PORT_METRICS = 10255
# Node lifecycle timing of the lab (the controller manager's defaults, spelled
# out so `ps` and the tests see them): a silent node is NotReady after
# NODE_GRACE seconds, its pods are evicted POD_EVICTION seconds later.
NODE_GRACE = 4.0
POD_EVICTION = 2.0
CONTROLLER_FLAGS = ["--node-monitor-grace-period", f"{NODE_GRACE:g}s",
                    "--pod-eviction-timeout", f"{POD_EVICTION:g}s"]
LAB_IMAGES = {  # offline image -> path in the registry (docker.io mirror layout)
    "busybox:latest": "library/busybox:latest",
    "busybox:1.36": "library/busybox:1.36",
    "kctl/echo:latest": "kctl/echo:latest",
}


def _bin(name: str) -> str:
    p = Path(sys.executable).parent / name
    if not p.exists():
        raise LabError(f"{p} not found: install kctl first (./deploy/install.sh)")
    return str(p)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


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


def control_plane_argv(lab: Lab, etcd_url: str) -> dict[str, list[str]]:
    """argv of the apiserver, scheduler and controller manager of `lab`."""
    cp = lab.cp_address
    apiserver = f"{cp}:{APISERVER_PORT}"
    return {
        "apiserver": [_bin("kctl-apiserver"), "--etcd-servers", etcd_url,
                      "--service-cluster-ip-range", SERVICE_CIDR, "--listen", apiserver,
                      "--http-listen", f"{cp}:{APISERVER_HTTP_PORT}",
                      "--metrics-listen", f"{cp}:{METRICS_PORTS['apiserver']}"],
        "scheduler": [_bin("kctl-scheduler"), "--apiserver", apiserver,
                      "--metrics-listen", f"{cp}:{METRICS_PORTS['scheduler']}"],
        "controller-manager": [_bin("kctl-controller-manager"), "--apiserver", apiserver,
                               "--metrics-listen", f"{cp}:{METRICS_PORTS['controller-manager']}",
                               *CONTROLLER_FLAGS],
    }


def agent_argv(name: str, lab: Lab, node: str, apiserver: str, registry: str) -> list[str]:
    info = lab.node(node)
    return [
        _bin("kctl-nodeagent"),
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
    ]


def kubeconfig_path(path: str | None = None) -> str:
    return os.path.expanduser(path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kctl/config")


def current_context(path: str) -> str:
    try:
        cfg = yaml.safe_load(open(path)) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return (cfg.get("current-context") or "") if isinstance(cfg, dict) else ""


def write_kubeconfig(name: str, server: str, path: str | None = None, http: str | None = None) -> str:
    """Add/replace the lab's cluster and context in the kubeconfig and make it current.

    One file for both tools (kubectlish/config.py): the cluster's `server`
    is the HTTP URL kubectl uses, kctl's gRPC address is in the
    `kctl.dev/grpc` extension. When the user has no ~/.kube/config and no
    $KUBECONFIG, ~/.kube/config becomes a symlink to this file, so plain
    `kubectl` finds the lab too; an existing ~/.kube/config is left alone."""
    explicit = path or os.environ.get("KUBECONFIG")
    path = kubeconfig_path(path)
    cfg: dict = {}
    if os.path.exists(path):
        cfg = yaml.safe_load(open(path)) or {}
    ctx = f"kctl-lab-{name}"
    cfg.setdefault("apiVersion", "v1")
    cfg.setdefault("kind", "Config")
    cluster = {"server": http or server,
               "extensions": [{"name": "kctl.dev/grpc", "extension": {"server": server}}]}
    for key, entry in (("clusters", {"name": ctx, "cluster": cluster}),
                       ("contexts", {"name": ctx, "context": {"cluster": ctx, "user": ctx}}),
                       ("users", {"name": ctx, "user": {}})):
        items = [i for i in (cfg.get(key) or []) if i.get("name") != ctx]
        items.append(entry)
        cfg[key] = items
    cfg["current-context"] = ctx
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.replace(tmp, path)
    kube = os.path.expanduser("~/.kube/config")
    if not explicit and not os.path.lexists(kube):
        os.makedirs(os.path.dirname(kube), exist_ok=True)
        os.symlink(path, kube)
    return path


def _images_to_registry(lab: Lab, registry: str, out: dict) -> None:
    """Build the offline images and push them to the lab registry (thread body)."""
    try:
        from deploy.images import build_images
        import subprocess
        built = build_images(os.path.join(naming.data_dir(lab.name), "images"))
        _wait("the lab registry", lambda: _http_ok(f"http://{registry}/v2/"), 15)
        procs = []
        for ref, dest in LAB_IMAGES.items():
            procs.append((ref, subprocess.Popen(
                ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{built[ref]}",
                 f"docker://{registry}/{dest}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        for ref, p in procs:
            _, err = p.communicate(timeout=120)
            if p.returncode != 0:
                raise LabError(f"pushing {ref} to the lab registry failed: {err.decode().strip()}")
        out["images"] = sorted(LAB_IMAGES)
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        out["error"] = exc


def up(name: str = "kctl", nodes: int = 3, *, subnet: str | None = None, progress=print,
       timeout: float = 60.0, kubeconfig: str | None = None) -> dict:
    """Bring up a lab cluster; returns what cluster.json records.

    The kubeconfig written is `kubeconfig`, else the first path of
    $KUBECONFIG, else ~/.kctl/config (its other entries are kept).
    """
    t0 = time.monotonic()

    def step(msg):
        progress(f"[{time.monotonic() - t0:5.1f}s] {msg}")

    if os.geteuid() != 0:
        raise LabError("kctl lab up needs root (it creates network namespaces and containers)")
    lab = Lab(LabSpec(name=name, nodes=nodes, subnet=subnet))
    if lab.exists():
        raise LabError(f'lab "{name}" is already up: `kctl lab status --name {name}`, '
                       f'or `kctl lab down --name {name}` first')
    lab.build()
    step(f"network {lab.subnet}: control plane {lab.cp_address}, "
         + ", ".join(f"{n.name} {n.ip}" for n in lab.nodes))
    try:
        cp = lab.cp_address
        apiserver = f"{cp}:{APISERVER_PORT}"
        registry = f"{cp}:{REGISTRY_PORT}"
        state, data = naming.state_dir(name), naming.data_dir(name)

        # Registry + images on a thread, while etcd and the apiserver start.
        from deploy.registry import CONFIG
        reg_cfg = os.path.join(state, "registry.yml")
        Path(reg_cfg).write_text(CONFIG.format(log_level="warn", storage=os.path.join(data, "registry"),
                                               addr=registry, token=os.urandom(8).hex()))
        lab.start("registry", ["/usr/bin/docker-registry", "serve", reg_cfg])
        image_result: dict = {}
        images = threading.Thread(target=_images_to_registry, args=(lab, registry, image_result), daemon=True)
        images.start()

        etcd_client, etcd_peer = _free_port(), _free_port()
        lab.start("etcd", ["etcd", "--name", f"kl{name}", "--data-dir", os.path.join(data, "etcd"),
                           "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
                           "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
                           "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                           "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                           "--initial-cluster", f"kl{name}=http://127.0.0.1:{etcd_peer}"])
        _wait("etcd", lambda: _http_ok(f"http://127.0.0.1:{etcd_client}/health"), 20)
        step(f"etcd on 127.0.0.1:{etcd_client}")

        argvs = control_plane_argv(lab, f"http://127.0.0.1:{etcd_client}")
        lab.start("apiserver", argvs["apiserver"])
        _wait("the apiserver", lambda: _api_ready(apiserver), 20)
        step(f"apiserver on {apiserver}")
        for comp in ("scheduler", "controller-manager"):
            lab.start(comp, argvs[comp])
        step("scheduler and controller-manager started "
             f"(node grace {NODE_GRACE:g}s, pod eviction after {POD_EVICTION:g}s more)")

        images.join(timeout=120)
        if "error" in image_result:
            raise image_result["error"]
        step(f"registry on {registry} serving " + ", ".join(image_result.get("images", [])))

        _service_routes(lab)
        agents = {}
        for n in lab.nodes:
            argv = agent_argv(name, lab, n.name, apiserver, registry)
            agents[n.name] = argv
            lab.start(f"agent-{n.name}", argv, node=n.name)
        info = {"name": name, "apiserver": apiserver, "registry": registry,
                "etcd": f"http://127.0.0.1:{etcd_client}", "agents": agents}
        _save_cluster(name, info)
        info["previous_context"] = current_context(kubeconfig_path(kubeconfig))  # `down` gives it back
        info["kubeconfig"] = write_kubeconfig(name, apiserver, kubeconfig,
                                              http=f"http://{cp}:{APISERVER_HTTP_PORT}")
        _save_cluster(name, info)
        step(f"node agents started; kubeconfig {info['kubeconfig']} (context kctl-lab-{name})")

        _wait(f"{nodes} Ready node(s)", lambda: _ready_nodes(apiserver) >= nodes, timeout, interval=0.2)
        step(f"{nodes} node(s) Ready and schedulable")
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


def _api_ready(server: str) -> bool:
    from machinery.client import Client

    async def probe():
        async with Client(server, timeout=2) as c:
            await c.version()
            return True
    return _run(probe())


def node_conditions(server: str) -> dict[str, str]:
    """{node name: Ready status ("True", "False", "Unknown")}."""
    return {name: st["ready"] for name, st in node_states(server).items()}


def node_states(server: str) -> dict[str, dict]:
    """{node name: {"ready": Ready status, "schedulable": no NoSchedule taint, not cordoned}}."""
    from machinery.client import Client

    async def probe():
        async with Client(server, timeout=2) as c:
            nodes, _ = await c.list("Node")
            out = {}
            for n in nodes:
                ready = [c for c in n.status.conditions if c.type == "Ready"]
                blocked = n.spec.unschedulable or any(t.effect == "NoSchedule" for t in n.spec.taints)
                out[n.metadata.name] = {"ready": ready[0].status if ready else "Unknown",
                                        "schedulable": not blocked}
            return out
    return _run(probe())


def _ready_nodes(server: str) -> int:
    """Nodes that are Ready AND schedulable: right after registration the node
    lifecycle controller may still carry its not-ready taint on some of them,
    and a Deployment applied in that window would land on the others only."""
    return sum(1 for s in node_states(server).values() if s["ready"] == "True" and s["schedulable"])


# ------------------------------------------------------ fault injection

def _agent_record(lab: Lab, node: str) -> dict | None:
    lab.node(node)  # LabError for an unknown node
    return lab.procs.records().get(f"agent-{node}")


def _set_link(lab: Lab, node: str, state: str) -> None:
    """Down/up the node's port on the lab bridge with `ip -n` (fork+exec).

    Not Lab.link_down/up: those open ``IPRoute(netns=...)``, which forks a
    helper *without* exec; in a process that already runs gRPC threads (a
    test or benchmark holding an API client) that child can hang for good.
    """
    import subprocess

    info = lab.node(node)
    res = subprocess.run(["ip", "-n", naming.lab_netns(lab.name), "link", "set", info.bridge_port, state],
                         capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        raise LabError(f"ip link set {info.bridge_port} {state}: {res.stderr.strip()}")
    lab.store.update(lambda s: s.setdefault("faults", {}).setdefault(node, {}).update(link=state))


def kill_node(name: str, node: str) -> list[int]:
    """Power off: the link goes down, the agent and every container die at once.

    In that order, so nothing the node does while dying reaches the control
    plane; everything is SIGKILLed (no graceful shutdown, like pulling the
    plug). The node's pod network namespaces and files stay, as a disk keeps
    its state: `start_node` boots a fresh agent that finds them.
    Returns PIDs that survived (should be empty).
    """
    from deploy.lab.procs import is_alive, kill_all

    lab = Lab.load(name)
    rec = _agent_record(lab, node)
    _set_link(lab, node, "down")
    if rec and is_alive(rec["pid"], rec.get("start_time")):
        kill_all([rec["pid"]])
    return lab.kill_node(node, timeout=1.0)


def start_agent(name: str, node: str) -> dict:
    """Start a fresh agent on `node` with the argv `up` used; returns its record."""
    lab = Lab.load(name)
    info = load_cluster(name)
    status = lab.status().get(f"agent-{node}")
    if status and status.get("alive"):
        raise LabError(f"the agent of {node} is already running (pid {status['pid']})")
    return lab.start(f"agent-{node}", info["agents"][node], node=node)


def start_node(name: str, node: str) -> dict:
    """Boot a killed node again: link up, then a fresh agent that finds its old state."""
    lab = Lab.load(name)
    _set_link(lab, node, "up")
    return start_agent(name, node)


def stop_agent(name: str, node: str, grace: float = 2.0) -> None:
    """The agent dies (TERM, KILL after `grace`); its containers keep running."""
    lab = Lab.load(name)
    rec = _agent_record(lab, node)
    if not rec or not lab.status().get(f"agent-{node}", {}).get("alive"):
        raise LabError(f"the agent of {node} is not running")
    lab.stop(f"agent-{node}", timeout=grace)


def partition(name: str, node: str) -> None:
    Lab.load(name).partition(node)


def heal(name: str, node: str) -> None:
    Lab.load(name).heal(node)


# ------------------------------------------------------------- teardown

def remove_kubeconfig_entries(name: str, path: str, previous: str = "") -> bool:
    """Drop the lab's cluster/context/user from kubeconfig `path`; if the lab's
    context was current, `previous` (the context current before `up`) is again.

    The file is removed when nothing else is left in it (it was ours alone).
    Returns True if something was removed.
    """
    ctx = f"kctl-lab-{name}"
    try:
        cfg = yaml.safe_load(open(path)) or {}
    except (OSError, yaml.YAMLError):
        return False
    if not isinstance(cfg, dict):
        return False
    changed = False
    for key in ("clusters", "contexts", "users"):
        items = cfg.get(key) or []
        kept = [i for i in items if not (isinstance(i, dict) and i.get("name") == ctx)]
        changed |= len(kept) != len(items)
        cfg[key] = kept
    if cfg.get("current-context") == ctx:
        names = {c.get("name") for c in cfg.get("contexts") or [] if isinstance(c, dict)}
        cfg["current-context"] = previous if previous in names else ""
        changed = True
    if not changed:
        return False
    if not any(cfg.get(k) for k in ("clusters", "contexts", "users")) and not cfg.get("current-context"):
        os.unlink(path)
        return True
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.replace(tmp, path)
    return True


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
