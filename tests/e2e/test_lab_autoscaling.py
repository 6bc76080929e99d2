"""Kubernetes' HorizontalPodAutoscaler walkthrough, end to end on a real 3-node lab (issue 13).

https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale-walkthrough/
adapted to the lab's offline images: `application/php-apache.yaml` from
../shared/k8s-examples as written except its image, registry.k8s.io/hpa-example
-> kctl/echo:latest with PORT=80 (the echo server's `/burn` spends about
0.1 s of CPU per request, as the example's index.php does). Then, as the
walkthrough:

    kctl autoscale deployment php-apache --cpu-percent=50 --min=1 --max=4
    kctl run load-generator --image=busybox --restart=Never -- \
        sh -c "while sleep 0.01; do wget -q -O- http://php-apache/burn; done"

(`--max` 4 instead of 10: the lab shares one machine), and the HPA is given
`behavior.scaleDown.stabilizationWindowSeconds: 15` (default 300 s) so that
the scale-down after the load stops shows within the test. The lab's
controller manager syncs HPAs every 5 s (deploy/lab/cluster.py); metrics
come from the agents' cgroups through the apiserver's metrics.k8s.io.

The tests run in file order: the load drives the HPA above one replica
(SuccessfulRescale "... above target", `kctl get hpa` shows the usage
against 50 %), and once the load generator is gone the HPA brings the
Deployment back to one replica ("All metrics below target"). The
`kctl get hpa` lines seen along the way are printed (the README shows them).
"""
from __future__ import annotations

import os
import re
import time

import pytest
import yaml

from tests import k8s_examples
from tests.e2e.lab_fixtures import lab, missing_tools, pods, ready, wait_for  # noqa: F401

pytestmark = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]

LAB_TAG = "hp"
EXAMPLE = k8s_examples.DIR / "application" / "php-apache.yaml"
SELECTOR = "app.kubernetes.io/name=php-apache"
LOAD = "while sleep 0.01; do timeout 5 wget -q -O- http://php-apache/burn; done"


def php_apache() -> str:
    k8s_examples.require()
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    for d in docs:
        if d["kind"] == "Deployment":
            c = d["spec"]["template"]["spec"]["containers"][0]
            c["image"] = "kctl/echo:latest"
            c["env"] = [{"name": "PORT", "value": "80"}]
    return yaml.safe_dump_all(docs, sort_keys=False)


def replicas(lab) -> int:
    return lab.api(lambda c: c.get("Deployment", "php-apache", "default")).spec.replicas


def rescales(lab) -> list[str]:
    items, _ = lab.api(lambda c: c.list("Event", "default", field_selector="involvedObject.name=php-apache"))
    return [e.message for e in items if e.involved_object.kind == "HorizontalPodAutoscaler"
            and e.reason == "SuccessfulRescale"]


class Transcript:
    """`kctl get hpa php-apache` lines, each printed once when it changes."""

    def __init__(self, lab):
        self.lab, self.t0, self.lines = lab, time.monotonic(), []

    def sample(self) -> str:
        out = self.lab.kctl("get", "hpa", "php-apache", check=False).stdout
        row = out.splitlines()[-1] if out.strip() else ""
        key = re.sub(r"\s+\S+$", "", row)           # AGE changes every sample
        if not self.lines or self.lines[-1][1] != key:
            self.lines.append((time.monotonic() - self.t0, key, row))
            if len(self.lines) == 1:
                print("\n" + out.splitlines()[0])
            print(f"{row}    (t={self.lines[-1][0]:.0f}s)")
        return row


@pytest.fixture(scope="module")
def walkthrough(lab):
    lab.kctl("apply", "-f", "-", input=php_apache())
    wait_for("php-apache Ready", lambda: [p for p in pods(lab, SELECTOR) if ready(p)], 90, interval=0.5)
    out = lab.kctl("autoscale", "deployment", "php-apache", "--cpu-percent=50", "--min=1", "--max=4").stdout
    assert "horizontalpodautoscaler" in out and "php-apache" in out, out
    lab.kctl("patch", "hpa", "php-apache", "--type", "merge",
             "-p", '{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":15}}}}')
    hpa = lab.api(lambda c: c.get("HorizontalPodAutoscaler", "php-apache", "default"))
    assert hpa.spec.behavior.scale_down.stabilization_window_seconds == 15
    yield Transcript(lab)
    lab.kctl("delete", "pod", "load-generator", "--grace-period", "0", check=False, timeout=60)
    lab.kctl("delete", "hpa", "php-apache", check=False)
    lab.kctl("delete", "-f", "-", input=php_apache(), check=False, timeout=90)


def test_idle_php_apache_reports_its_cpu_and_stays_at_one_replica(lab, walkthrough):
    """Before any load: the HPA reads a utilization (the metrics pipeline
    works) and keeps one replica."""
    row = wait_for("the HPA reading a CPU utilization",
                   lambda: (lambda r: r if re.search(r"cpu: \d+%/50%", r) else None)(walkthrough.sample()),
                   90, interval=2)
    assert re.search(r"^php-apache\s+Deployment/php-apache\s+cpu: \d+%/50%\s+1\s+4\s+1\s", row), row
    hpa = lab.api(lambda c: c.get("HorizontalPodAutoscaler", "php-apache", "default"))
    conds = {c.type: c.status for c in hpa.status.conditions}
    assert conds.get("AbleToScale") == "True" and conds.get("ScalingActive") == "True", conds
    assert replicas(lab) == 1 and rescales(lab) == []


def test_load_scales_php_apache_up(lab, walkthrough):
    lab.kctl("run", "load-generator", "--image=busybox", "--restart=Never", "--", "sh", "-c", LOAD)
    print(f"$ kctl run load-generator ...    (t={time.monotonic() - walkthrough.t0:.0f}s)")

    def scaled():
        walkthrough.sample()
        return replicas(lab) > 1
    wait_for("the HPA scaling php-apache above 1 replica", scaled, 180, interval=2)
    up = rescales(lab)
    assert up and re.fullmatch(r"New size: [234]; reason: cpu resource utilization \(percentage of request\) "
                               r"above target", up[0]), up
    wait_for("the new replicas Ready", lambda: len([p for p in pods(lab, SELECTOR) if ready(p)]) == replicas(lab),
             90, interval=1)
    top = lab.kctl("top", "pods", "-l", SELECTOR, check=False)
    print(f"$ kctl top pods -l {SELECTOR}\n{top.stdout}{top.stderr}")
    for _ in range(3):
        walkthrough.sample()
        time.sleep(3)
    assert 1 < replicas(lab) <= 4


def test_php_apache_scales_back_down_after_the_load_stops(lab, walkthrough):
    lab.kctl("delete", "pod", "load-generator", "--grace-period", "0", timeout=60)
    print(f"$ kctl delete pod load-generator    (t={time.monotonic() - walkthrough.t0:.0f}s)")

    def down():
        walkthrough.sample()
        return replicas(lab) == 1
    wait_for("the HPA scaling php-apache back to 1 replica", down, 240, interval=2)
    msgs = rescales(lab)
    assert "New size: 1; reason: All metrics below target" in msgs, msgs
    wait_for("one php-apache pod left", lambda: len(pods(lab, SELECTOR)) == 1, 60, interval=1)
    walkthrough.sample()
    desc = lab.kctl("describe", "hpa", "php-apache").stdout
    print("$ kctl describe hpa php-apache  (events)\n" + desc[desc.index("Events:"):] if "Events:" in desc else desc)
