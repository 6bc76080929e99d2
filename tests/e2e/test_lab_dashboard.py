"""`kctl dashboard` on a real lab, in a real headless chromium (DevTools
protocol, tests/integration/test_dashboard_browser.py's Browser):

1. the page shows the 3 nodes and the echo Deployment's 6 pods inside them;
2. the page's own lab control (`--lab-controls`: kill-node node2) powers
   node2 off: node2 turns NotReady on the page, and the replacement pods
   appear Ready on node1/node3 (and as the Service's 6 ready endpoints),
   without a reload; the events filter shows node2's NodeNotReady;
3. start-node node2 (also from the page) brings it back Ready;
4. `kctl rollout restart deployment/echo` shows old and new ReplicaSets side
   by side while the rollout runs, then one ReplicaSet again;
5. a pod's panel shows its scheduler decision and its log (or says the log
   is not available).

Screenshots of every step are saved in a directory under pytest's tmp dir,
printed at the start (`-s` shows it).
"""
from __future__ import annotations

import os

import pytest

from harness.process import REPO
from tests.e2e.lab_fixtures import lab, missing_tools, wait_for  # noqa: F401
from tests.integration.test_dashboard_browser import Browser, Dashboard, chromium_missing

LAB_TAG = "db"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (lab)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
    pytest.mark.skipif(chromium_missing(), reason="chromium missing (scripts/test.sh installs it)"),
]

# JavaScript evaluated in the page: what it shows, read from its data-* attributes.
NODES = "Object.fromEntries([...document.querySelectorAll('section.node[data-node]')]" \
        ".filter(n => n.dataset.node).map(n => [n.dataset.node, n.dataset.ready]))"
ECHO_PODS = "[...document.querySelectorAll('#nodes section.node[data-node] .pod[data-pod^=\"default/echo-\"]')]" \
            ".map(p => [p.closest('[data-node]').dataset.node, p.dataset.state])"
ROLLOUT = "(() => { const d = document.querySelector('[data-deployment=\"echo\"]'); if (!d) return null;" \
          " return [...d.querySelectorAll('.rs')].map(r => r.dataset.new); })()"


def ready_echo(b, nodes=("node1", "node2", "node3")) -> int:
    return sum(1 for node, state in b.eval(ECHO_PODS) if node in nodes and state == "ready")


def test_dashboard_shows_node_failure_and_rollout(lab, tmp_path_factory):
    shots = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"\ndashboard screenshots: {shots}")
    lab.kctl("apply", "-f", str(REPO / "examples" / "echo.yaml"))
    work = tmp_path_factory.mktemp("dashboard")
    with Dashboard(work, lab.kubeconfig, "--lab-controls") as dash, Browser(work) as b:
        b.open(dash.url + "/?namespace=default")
        b.wait_for(f"JSON.stringify({NODES}) === JSON.stringify({{node1: 'True', node2: 'True', node3: 'True'}})",
                   60, "3 Ready nodes on the page")
        b.wait_for(f"({ECHO_PODS}).filter(([n, s]) => s === 'ready').length === 6", 120, "6 ready echo pods")
        b.screenshot(shots / "1-three-nodes.png")
        marker = b.eval("window.__marker = Math.random()")
        on_node2 = sum(1 for node, _ in b.eval(ECHO_PODS) if node == "node2")
        assert on_node2 > 0, f"no echo pod on node2 to move: {b.eval(ECHO_PODS)}"

        # 2. Power node2 off with the page's own lab control.
        b.click('.labbtn[data-action="kill-node"][data-node="node2"]')
        b.wait_for(f"({NODES}).node2 !== 'True'", 60, "node2 NotReady on the page")
        b.screenshot(shots / "2-node2-notready.png")
        wait_for("6 ready echo pods on node1/node3 on the page",
                 lambda: ready_echo(b, ("node1", "node3")) >= 6, 120)
        assert b.eval(NODES)["node2"] != "True"
        assert b.eval("window.__marker") == marker, "the page was reloaded"
        b.wait_for("document.querySelectorAll('[data-service=\"echo\"] .ep.ready').length >= 6", 60,
                   "6 ready endpoints of the echo Service")
        b.screenshot(shots / "3-pods-moved.png")
        assert "powered off" in b.eval("document.getElementById('status').textContent")
        # The events of node2 only, through the page's filter (and in the URL).
        b.eval("(f => { f.value = 'node/node2'; f.dispatchEvent(new Event('input')); })"
               "(document.getElementById('event-filter'))")
        b.wait_for("[...document.querySelectorAll('#events .ev b')].some(r => r.textContent === 'NodeNotReady')", 60,
                   "node2's NodeNotReady event")
        assert set(b.eval("[...document.querySelectorAll('#events .ev .obj')].map(o => o.textContent)")) == {"node/node2"}
        assert "events=node%2Fnode2" in b.eval("location.search")
        b.screenshot(shots / "3b-node2-events.png")
        b.eval("(f => { f.value = ''; f.dispatchEvent(new Event('input')); })(document.getElementById('event-filter'))")

        # 3. Boot it again from the page.
        b.click('.labbtn[data-action="start-node"][data-node="node2"]')
        b.wait_for(f"({NODES}).node2 === 'True'", 90, "node2 Ready again on the page")

        # 4. A rolling restart: old and new ReplicaSets side by side, then one.
        lab.kctl("rollout", "restart", "deployment/echo")
        seen = b.wait_for(f"(r => r && r.includes('true') && r.includes('false') && r)({ROLLOUT})", 60,
                          "old and new ReplicaSets of echo during the rollout")
        b.screenshot(shots / "4-rollout.png")
        assert seen[0] == "true", f"the new ReplicaSet comes first: {seen}"
        assert b.eval("document.querySelector('[data-deployment=\"echo\"]').dataset.rolling") == "true"
        b.wait_for(f"JSON.stringify({ROLLOUT}) === '[\"true\"]' && ({ECHO_PODS}).filter(([n, s]) => s === 'ready')"
                   ".length === 6", 180, "the rollout done: one ReplicaSet, 6 ready pods")
        b.screenshot(shots / "5-rollout-done.png")

        # 5. A pod's panel: the scheduler's decision and the log (or why not).
        b.click('#nodes .pod[data-pod^="default/echo-"]')
        text = b.wait_for("document.querySelector('#panel:not([hidden]) [data-panel-pod]') && "
                          "!document.querySelector('#panel').textContent.includes('loading log') && "
                          "document.querySelector('#panel').textContent", 30, "the pod panel")
        assert "considered" in text and "LeastAllocated" in text, text
        assert "log not available" in text or b.eval("!!document.querySelector('#panel pre.log')"), text
        b.screenshot(shots / "6-pod-panel.png")
        assert b.eval("window.__marker") == marker, "the page was reloaded"
        assert b.errors == [], b.errors
