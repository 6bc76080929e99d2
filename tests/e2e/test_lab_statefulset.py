"""A StatefulSet with its own volumes, end to end on a real 3-node lab (issue 12's Acceptance).

In namespace `sts`: the headless Service `nginx` and the StatefulSet `web`
(3 replicas, OrderedReady, busybox; a volumeClaimTemplate `data` on the
`local-path` class, WaitForFirstConsumer). Each pod appends
"<hostname> <its uid>" to /data/log on its volume and sleeps; its readiness
probe waits for that line. The tests run in file order and build on each
other:

* the pods come up in order: a watch started before `kctl apply` sees every
  pod state, and at no point does web-N exist before web-0..N-1 are all
  Running and Ready; the events name each pod and claim creation;
* each claim `data-web-N` is Bound to a local-path volume pinned (node
  affinity) to the node its pod runs on, and the scheduler chose that node
  (`volume.kubernetes.io/selected-node`);
* each pod's log holds one line, its own hostname and uid — in the pod and
  in the volume's directory on the node;
* `web-N.nginx.sts.svc.cluster.local` resolves (busybox nslookup from a pod
  in another namespace) to that pod's IP;
* `kctl delete pod web-1` → web-1 again (new uid), on the same node, with
  the same claim, and its log holds the old pod's line then its own; its
  name resolves to the new pod's IP;
* `kctl scale sts/web --replicas 1` removes web-2, and only once it is gone
  web-1 (highest ordinal first); all three claims stay Bound
  (persistentVolumeClaimRetentionPolicy defaults to Retain).

Busybox commands run under `timeout` (design §4).
"""
from __future__ import annotations

import asyncio
import os
import re

import pytest

from tests.e2e.lab_fixtures import lab, missing_tools, pods, ready, wait_for  # noqa: F401

pytestmark = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]

LAB_TAG = "st"
NS = "sts"
SVC = "nginx"
SELECTOR = "app=web"
REPLICAS = 3
NAMES = [f"web-{i}" for i in range(REPLICAS)]
SELECTED_NODE = "volume.kubernetes.io/selected-node"
HOSTNAME_LABEL = "kubernetes.io/hostname"

MANIFESTS = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {SVC}, namespace: {NS}}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: web, port: 80}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web, namespace: {NS}}}
spec:
  serviceName: {SVC}
  replicas: {REPLICAS}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sh, -c, 'echo "$(hostname) $POD_UID" >> /data/log; exec sleep 3600']
        env:
        - name: POD_UID
          valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}
        readinessProbe:
          exec: {{command: [sh, -c, 'grep -q "$POD_UID" /data/log']}}
          periodSeconds: 1
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: local-path
      resources: {{requests: {{storage: 16Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: probe, namespace: default}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: main, image: busybox, command: [sleep, "3600"]}}
"""


# ------------------------------------------------------------------ helpers

class PodRecorder:
    """Every state of the set's pods a watch sees, from before they exist.

    `samples`: after each event, {name: (ready, terminating)} of the pods
    that exist; `log`: ("created"|"ready"|"terminating"|"gone", name) in the
    order the watch saw them.
    """

    def __init__(self, lab):
        self.samples: list[dict[str, tuple[bool, bool]]] = []
        self.log: list[tuple[str, str]] = []
        self.task = asyncio.run_coroutine_threadsafe(self._watch(lab.api.client), lab.api.loop)

    def _state(self, state: dict) -> None:
        now = {p.metadata.name: (ready(p), p.metadata.HasField("deletion_timestamp")) for p in state.values()}
        before = self.samples[-1] if self.samples else {}
        for name, (is_ready, terminating) in now.items():
            was = before.get(name)
            if was is None:
                self.log.append(("created", name))
            if is_ready and not (was and was[0]):
                self.log.append(("ready", name))
            if terminating and not (was and was[1]):
                self.log.append(("terminating", name))
        self.log.extend(("gone", name) for name in before if name not in now)
        self.samples.append(now)

    async def _watch(self, client):
        items, rv = await client.list("Pod", NS, label_selector=SELECTOR)
        state = {p.metadata.uid: p for p in items}
        self._state(state)
        while True:  # a watch the server ends is resumed from the last resourceVersion
            async for ev in client.watch("Pod", NS, resource_version=rv, label_selector=SELECTOR):
                rv = ev.resource_version or rv
                if ev.object is None or ev.type not in ("ADDED", "MODIFIED", "DELETED"):
                    continue
                if ev.type == "DELETED":
                    state.pop(ev.object.metadata.uid, None)
                else:
                    state[ev.object.metadata.uid] = ev.object
                self._state(state)

    def stop(self) -> None:
        self.task.cancel()


def web_pods(lab) -> dict:
    return {p.metadata.name: p for p in pods(lab, SELECTOR, NS)}


def all_ready(lab, names=NAMES) -> dict:
    ps = web_pods(lab)
    return ps if sorted(ps) == sorted(names) and all(ready(p) for p in ps.values()) else {}


def in_pod(lab, pod: str, *argv: str, namespace: str = NS, timeout: float = 5):
    return lab.kctl("exec", "-n", namespace, pod, "--", "timeout", str(int(timeout)), *argv,
                    check=False, timeout=timeout + 20)


def resolve(lab, name: str) -> set[str]:
    """The IPv4 addresses busybox nslookup in the probe pod prints for `name`."""
    res = in_pod(lab, "probe", "nslookup", name, namespace="default")
    out = res.stdout + res.stderr
    body = out.split("Name:", 1)[1] if "Name:" in out else ""
    return set(re.findall(r"^Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$", body, re.M))


def fqdn(name: str) -> str:
    return f"{name}.{SVC}.{NS}.svc.cluster.local"


def claim(lab, name: str):
    return lab.api(lambda c: c.get("PersistentVolumeClaim", name, NS))


def claim_names(lab) -> list[str]:
    items, _ = lab.api(lambda c: c.list("PersistentVolumeClaim", NS))
    return sorted(c.metadata.name for c in items)


def pinned_node(pv) -> list[str]:
    return [v for t in pv.spec.node_affinity.required.node_selector_terms for r in t.match_expressions
            if r.key == HOSTNAME_LABEL and r.operator == "In" for v in r.values]


def log_lines(lab, pod: str) -> list[str]:
    res = in_pod(lab, pod, "cat", "/data/log")
    assert res.returncode == 0, res
    return res.stdout.splitlines()


# -------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def recorder(lab):
    rec = PodRecorder(lab)
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def web(lab, recorder):
    wait_for("the pod watch started", lambda: recorder.samples, 10)
    lab.kctl("apply", "-f", "-", input=MANIFESTS)
    ps = wait_for("web-0..2 Running and Ready", lambda: all_ready(lab), 180, interval=0.5)
    wait_for("the probe pod Ready", lambda: [p for p in pods(lab, "", "default") if ready(p)], 60)
    return ps


def test_pods_come_up_in_order(lab, recorder, web):
    print(f"\nwatch: {len(recorder.samples)} samples; {recorder.log}")
    for sample in recorder.samples:
        for name in sample:
            n = int(name.rsplit("-", 1)[1])
            for i in range(n):
                assert sample.get(f"web-{i}", (False, False))[0], \
                    f"{name} existed while web-{i} was not Ready: {sample}"
    order = [(what, name) for what, name in recorder.log if what in ("created", "ready")]
    assert order == [("created", "web-0"), ("ready", "web-0"), ("created", "web-1"), ("ready", "web-1"),
                     ("created", "web-2"), ("ready", "web-2")], recorder.log
    events, _ = lab.api(lambda c: c.list("Event", NS, field_selector="involvedObject.name=web"))
    messages = {e.message for e in events}
    for name in NAMES:
        assert f"create Pod {name} in StatefulSet web successful" in messages, messages
        assert f"create Claim data-{name} Pod {name} in StatefulSet web success" in messages, messages
    out = lab.kctl("get", "sts", "web", "-n", NS).stdout
    assert re.search(r"^web\s+3/3\s", out, re.M), out


def test_each_claim_is_bound_to_a_volume_on_its_pods_node(lab, web):
    assert claim_names(lab) == [f"data-{n}" for n in NAMES]
    nodes = set()
    for name, pod in web.items():
        vols = {v.name: v.persistent_volume_claim.claim_name for v in pod.spec.volumes
                if v.HasField("persistent_volume_claim")}
        assert vols == {"data": f"data-{name}"}, pod.spec.volumes
        pvc = claim(lab, f"data-{name}")
        assert pvc.status.phase == "Bound" and pvc.spec.volume_name, pvc.status
        assert pvc.spec.storage_class_name == "local-path"
        assert pvc.metadata.annotations.get(SELECTED_NODE) == pod.spec.node_name
        pv = lab.api(lambda c: c.get("PersistentVolume", pvc.spec.volume_name))
        assert pv.status.phase == "Bound"
        assert (pv.spec.claim_ref.namespace, pv.spec.claim_ref.name) == (NS, f"data-{name}")
        assert pinned_node(pv) == [pod.spec.node_name], pv.spec.node_affinity
        nodes.add(pod.spec.node_name)
    print(f"\npods on nodes: {sorted((n, p.spec.node_name) for n, p in web.items())}")
    out = lab.kctl("get", "pvc", "-n", NS).stdout
    for name in NAMES:
        assert re.search(rf"^data-{name}\s+Bound\s+pvc-\S+\s+16Mi\s+RWO\s+local-path", out, re.M), out


def test_each_pod_wrote_its_hostname_to_its_own_volume(lab, web):
    for name, pod in web.items():
        assert log_lines(lab, name) == [f"{name} {pod.metadata.uid}"]
        volume = claim(lab, f"data-{name}").spec.volume_name
        pv = lab.api(lambda c: c.get("PersistentVolume", volume))
        with open(os.path.join(pv.spec.host_path.path, "log")) as f:     # the node's directory
            assert f.read() == f"{name} {pod.metadata.uid}\n"


def test_each_pod_name_resolves_to_its_ip(lab, web):
    """The endpoints of the last pod to turn Ready may reach kctl-dns a moment
    after the test sees it Ready: the answers are awaited (generous bound)."""
    for name, pod in web.items():
        wait_for(f"{fqdn(name)} -> {pod.status.pod_ip}", lambda: resolve(lab, fqdn(name)) == {pod.status.pod_ip},
                 30, interval=0.5)
    everyone = {p.status.pod_ip for p in web.values()}
    wait_for(f"{SVC} -> all three", lambda: resolve(lab, f"{SVC}.{NS}.svc.cluster.local") == everyone, 30,
             interval=0.5)


def test_a_deleted_pod_comes_back_with_its_name_node_claim_and_data(lab, web):
    old = web_pods(lab)["web-1"]
    volume = claim(lab, "data-web-1").spec.volume_name
    lab.kctl("delete", "pod", "web-1", "-n", NS, timeout=90)

    def back():
        p = web_pods(lab).get("web-1")
        return p if p is not None and p.metadata.uid != old.metadata.uid and ready(p) else None
    new = wait_for("web-1 back and Ready", back, 120, interval=0.5)
    assert new.spec.node_name == old.spec.node_name
    assert [v.persistent_volume_claim.claim_name for v in new.spec.volumes
            if v.HasField("persistent_volume_claim")] == ["data-web-1"]
    assert claim(lab, "data-web-1").spec.volume_name == volume
    assert claim_names(lab) == [f"data-{n}" for n in NAMES]
    assert log_lines(lab, "web-1") == [f"web-1 {old.metadata.uid}", f"web-1 {new.metadata.uid}"]
    assert in_pod(lab, "web-1", "hostname").stdout.strip() == "web-1"
    wait_for("web-1's name resolving to its new IP", lambda: resolve(lab, fqdn("web-1")) == {new.status.pod_ip},
             60, interval=0.5)
    print(f"\nweb-1: {old.status.pod_ip} -> {new.status.pod_ip} on {new.spec.node_name}")


def test_scale_down_removes_the_highest_ordinal_first_and_keeps_the_claims(lab, recorder, web):
    volumes = {n: claim(lab, f"data-{n}").spec.volume_name for n in NAMES}
    start = len(recorder.log)
    lab.kctl("scale", "sts/web", "--replicas", "1", "-n", NS)
    wait_for("only web-0 left", lambda: list(web_pods(lab)) == ["web-0"] and all_ready(lab, ["web-0"]), 120,
             interval=0.5)
    wait_for("the watch saw web-1 gone", lambda: ("gone", "web-1") in recorder.log[start:], 10)
    seen = [e for e in recorder.log[start:] if e[0] in ("terminating", "gone")]
    assert seen == [("terminating", "web-2"), ("gone", "web-2"), ("terminating", "web-1"), ("gone", "web-1")], \
        recorder.log[start:]
    for name in NAMES:
        pvc = claim(lab, f"data-{name}")
        assert pvc.status.phase == "Bound" and pvc.spec.volume_name == volumes[name], (name, pvc.status)
    sts = lab.api(lambda c: c.get("StatefulSet", "web", NS))
    assert (sts.status.replicas, sts.status.ready_replicas) == (1, 1)
