"""The guestbook (examples/guestbook) end to end on a real 3-node lab (issue 11).

The images come from Debian packages (deploy/debimages.py): the module's
first fixture builds them, or finds them in the cache (KCTL_IMAGE_CACHE,
/var/cache/kctl-images) so `kctl lab up` only pushes them. Then, in file
order, each test building on the last:

* `kctl apply -f examples/guestbook/` → the Redis leader (with its claim
  Bound to a local-path volume pinned to the leader's node), two followers
  and two front ends are Ready;
* entries written through the front end's NodePort (one node's address) are
  read back through another node's, from the leader and, once replicated,
  from the followers — the front end reaches both by their Services' DNS
  names, with the password from the Secret;
* `kctl delete pod` of the leader → a new leader pod on the same node (the
  volume is pinned there) and the entries are still there (the append-only
  file on the claim);
* a changed title in the ConfigMap reaches the front ends through the
  mounted file, without a restart;
* `kctl lab kill-node` of a node with a front end (not the leader's: a pod
  whose volume is pinned to a dead node rightly stays Pending) → the front
  ends run elsewhere and the entries are still served, from the leader and
  the followers.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.lab_fixtures import lab, missing_tools, pods, ready, wait_for  # noqa: F401

pytestmark = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables, mmdebstrap)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]

LAB_TAG = "gb"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "guestbook"
NODE_PORT = 30080
LEADER = "app.kubernetes.io/name=redis,role=leader"
# Asks the front end in its own pod (the NodePort would pick either replica).
IN_POD_GET = "import urllib.request; print(urllib.request.urlopen('http://localhost:8080/entries').read().decode())"
ENTRIES = ["first entry", "second entry: ünïcode & <html>"]


@pytest.fixture(scope="module", autouse=True)
def debian_images():
    """Build (first run) or find cached the Debian-package images before the lab comes up."""
    from deploy.debimages import CACHE, build_debian_images
    t0 = time.monotonic()
    built = build_debian_images(log=print)
    print(f"\nDebian images ready in {time.monotonic() - t0:.1f}s (cache {CACHE})")
    return built


def http(lab, node: str, path: str, body: str | None = None) -> tuple[int, dict]:
    """One request to the front end's NodePort on `node`'s address."""
    req = urllib.request.Request(f"http://{lab.node(node).ip}:{NODE_PORT}{path}", method="POST" if body else "GET",
                                 data=body.encode() if body else None,
                                 headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def entries(lab, node: str, source: str = "") -> list[str] | None:
    try:
        code, body = http(lab, node, "/entries" + (f"?from={source}" if source else ""))
    except OSError:
        return None
    return body["entries"] if code == 200 else None


def all_ready(lab) -> dict[str, object]:
    items = pods(lab)
    by_tier = {}
    for p in items:
        by_tier.setdefault(p.metadata.labels.get("role") or p.metadata.labels.get("tier"), []).append(p)
    want = {"leader": 1, "follower": 2, "frontend": 2}
    ok = all(len([p for p in by_tier.get(t, []) if ready(p)]) == n for t, n in want.items())
    return {p.metadata.name: p for p in items} if ok and len(items) == 5 else {}


def test_guestbook_comes_up(lab):
    out = lab.kctl("apply", "-f", str(EXAMPLE)).stdout
    for obj in ("configmap/guestbook-settings", "secret/redis-auth", "persistentvolumeclaim/redis-data",
                "deployment.apps/redis-leader", "deployment.apps/redis-follower", "deployment.apps/frontend",
                "service/frontend"):
        assert f"{obj} created" in out, out
    wait_for("the guestbook's 5 pods Ready", lambda: all_ready(lab), 90)
    claim = lab.api(lambda c: c.get("PersistentVolumeClaim", "redis-data", "default"))
    assert claim.status.phase == "Bound", claim.status
    pv = lab.api(lambda c: c.get("PersistentVolume", claim.spec.volume_name))
    leader, = pods(lab, LEADER)
    terms = pv.spec.node_affinity.required.node_selector_terms
    assert [v for t in terms for e in t.match_expressions for v in e.values] == [leader.spec.node_name]
    # Ready pods reach the proxies through the EndpointSlices a moment later (as in Kubernetes).
    wait_for("the front end's NodePort answering on every node",
             lambda: all(entries(lab, n) is not None for n in ("node1", "node2", "node3")), 30)


def test_entries_written_and_read_through_the_node_port(lab):
    for i, text in enumerate(ENTRIES):
        code, body = http(lab, "node1", "/entries", text)
        assert code == 201, body
        assert body["entries"] == ENTRIES[:i + 1]
    assert entries(lab, "node2", "leader") == ENTRIES
    wait_for("the followers to replicate the entries", lambda: entries(lab, "node3") == ENTRIES, 30)
    code, body = http(lab, "node3", "/entries", " ")
    assert (code, body) == (400, {"error": "an entry must not be empty"})


def test_redis_leader_pod_deleted_comes_back_with_its_data(lab):
    old, = pods(lab, LEADER)
    lab.kctl("delete", "pod", old.metadata.name, timeout=60)

    def new_leader():
        items = [p for p in pods(lab, LEADER) if p.metadata.uid != old.metadata.uid]
        return items[0] if len(items) == 1 and ready(items[0]) else None
    new = wait_for("a new Ready redis leader", new_leader, 60)
    assert new.spec.node_name == old.spec.node_name
    wait_for("the entries from the new leader", lambda: entries(lab, "node2", "leader") == ENTRIES, 30)
    code, body = http(lab, "node3", "/entries", "third entry")
    assert code == 201 and body["entries"] == [*ENTRIES, "third entry"], body


def test_configmap_title_change_reaches_front_ends_without_restart(lab):
    before = {p.metadata.uid for p in pods(lab, "tier=frontend")}
    lab.kctl("patch", "configmap", "guestbook-settings", "--type", "merge",
             "-p", json.dumps({"data": {"title": "our guestbook"}}))

    def title(pod: str) -> str | None:
        res = lab.kctl("exec", pod, "--", "python3", "-c", IN_POD_GET, check=False, timeout=20)
        return json.loads(res.stdout)["title"] if res.returncode == 0 else None

    def titles():
        return {title(p.metadata.name) for p in pods(lab, "tier=frontend")} == {"our guestbook"}
    wait_for("the new title on every front end", titles, 60, interval=1)
    after = pods(lab, "tier=frontend")
    assert {p.metadata.uid for p in after} == before
    assert all(cs.restart_count == 0 for p in after for cs in p.status.container_statuses)


def test_front_end_node_killed_the_entries_are_still_served(lab):
    leader, = pods(lab, LEADER)
    front_nodes = {p.spec.node_name for p in pods(lab, "tier=frontend")}
    # a node with a front end but not the leader (the scheduler spreads the two
    # front ends, so there is one); else any node but the leader's
    others = sorted({"node1", "node2", "node3"} - {leader.spec.node_name})
    victim = next((n for n in others if n in front_nodes), others[0])
    survivor = next(n for n in ("node1", "node2", "node3") if n != victim)
    lab.lab("kill-node", victim)

    def front_ends_elsewhere():
        items = pods(lab, "tier=frontend")
        return len([p for p in items if ready(p) and p.spec.node_name != victim]) == 2
    wait_for(f"2 Ready front ends off {victim}", front_ends_elsewhere, 60)
    want = [*ENTRIES, "third entry"]
    wait_for("the entries through a surviving node", lambda: entries(lab, survivor, "leader") == want, 30)
    wait_for("the entries from the followers", lambda: entries(lab, survivor) == want, 60)
