"""Kubernetes' own examples on a real 3-node lab (`kctl lab up`), their
images replaced by the lab's: every example pod reaches Running and Ready
(placement examples on the node they select), the Services get their
endpoints. One lab for the module (tests/e2e/lab_fixtures.py), torn down
whatever happens.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests import k8s_examples
from tests.e2e.lab_fixtures import lab, missing_tools, pods, ready, wait_for  # noqa: F401 - fixture

pytestmark = [
    pytest.mark.e2e, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, runc, iptables)"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing tools: {missing_tools()}"),
]

LAB_TAG = "ex"
EXAMPLES = k8s_examples.DIR

# --------------------------------------------------------------------------
# The k8s examples, with their images replaced by the lab's images.
#
# Mapping: every web/app server image (nginx*, hello-app, hello-go-gke,
# hello-frontend, gb-frontend, hpa-example, goproxy, liveness, redis, pause)
# -> kctl/echo:latest (a long-running HTTP server on 8080); busybox images
# -> busybox. All other fields stay as written, except (listed per file):
#   * pods/probe/http-liveness.yaml: `args: [/server]` dropped (the entry
#     point of the liveness image; kctl/echo has its own).
#   * pods/probe/pod-with-http-healthcheck.yaml: liveness httpGet port
#     80 -> 8080 (the probe must reach the server).
# containerPorts without a probe (80) stay as written: they are informational.
# Node placement examples get the labels they select on (node3: disktype=ssd,
# topology.kubernetes.io/zone=antarctica-east1) and must land on node3.
#
# Not run (they cannot reach Running+Ready by design, or need what the lab
# lacks): pods/commands.yaml (runs to completion), pods/two-container-pod.yaml
# (restartPolicy Never, one container exits), pods/resource/*-request-limit
# (stress images), application/mysql + wordpress (PersistentVolumeClaims),
# service/networking/nginx-secure-app.yaml (Secret/ConfigMap volumes),
# application/deployment-update.yaml / deployment-scale.yaml (the same
# Deployment as application/deployment.yaml; updates and scaling are covered
# by the echo Deployment below).
# --------------------------------------------------------------------------
ECHO_IMAGE = "kctl/echo:latest"
IMAGE_MAP = [
    (re.compile(r"(^|/)busybox(:.*)?$"), "busybox"),
    (re.compile(r".*"), ECHO_IMAGE),
]
# (namespace, files applied there, pods expected, node the pods must run on)
EXAMPLE_SETS = [
    ("ex-nginx", ["controllers/nginx-deployment.yaml"], 3, None),
    ("ex-rs", ["controllers/frontend.yaml"], 3, None),
    ("ex-app", ["application/deployment.yaml"], 2, None),
    ("ex-nginxapp", ["application/nginx-app.yaml"], 3, None),
    ("ex-php", ["application/php-apache.yaml"], 1, None),
    ("ex-retain", ["application/deployment-retainkeys.yaml"], 1, None),
    ("ex-guestbook", ["application/guestbook/redis-leader-deployment.yaml",
                      "application/guestbook/redis-leader-service.yaml",
                      "application/guestbook/frontend-deployment.yaml",
                      "application/guestbook/frontend-service.yaml"], 4, None),
    ("ex-access", ["service/access/backend-deployment.yaml", "service/access/backend-service.yaml",
                   "service/access/frontend-deployment.yaml", "service/access/frontend-service.yaml"], 4, None),
    ("ex-net", ["service/networking/run-my-nginx.yaml", "service/networking/nginx-svc.yaml",
                "service/nginx-service.yaml"], 2, None),
    ("ex-pod", ["pods/simple-pod.yaml"], 1, None),
    ("ex-env", ["pods/inject/envars.yaml"], 1, None),
    ("ex-exec", ["pods/probe/exec-liveness.yaml"], 1, None),
    ("ex-tcp", ["pods/probe/tcp-liveness-readiness.yaml"], 1, None),
    ("ex-http", ["pods/probe/http-liveness.yaml"], 1, None),
    ("ex-health", ["pods/probe/pod-with-http-healthcheck.yaml"], 1, None),
    ("ex-redis", ["pods/storage/redis.yaml"], 1, None),
    ("ex-toler", ["pods/pod-with-toleration.yaml"], 1, None),
    ("ex-ssd", ["pods/pod-nginx.yaml"], 1, "node3"),
    ("ex-affinity", ["pods/pod-with-node-affinity.yaml"], 1, "node3"),
]
NODE3_LABELS = ["disktype=ssd", "topology.kubernetes.io/zone=antarctica-east1"]


def lab_image(image: str) -> str:
    for pattern, replacement in IMAGE_MAP:
        if pattern.search(image):
            return replacement
    raise AssertionError(image)


def adapt(path: str, doc: dict) -> dict:
    """The manifest with lab images (and the documented adjustments)."""
    if not isinstance(doc, dict):
        return doc
    spec = doc.get("spec") or {}
    pod_spec = spec if doc.get("kind") == "Pod" else (spec.get("template") or {}).get("spec")
    for c in (pod_spec or {}).get("containers", []):
        c["image"] = lab_image(c["image"])
        if path == "pods/probe/http-liveness.yaml":
            c.pop("args", None)
        if path == "pods/probe/pod-with-http-healthcheck.yaml":
            c["livenessProbe"]["httpGet"]["port"] = 8080
    return doc


def test_k8s_examples_run_with_lab_images(lab):
    k8s_examples.require()
    lab.kctl("label", "nodes", "node3", *NODE3_LABELS, "--overwrite")   # the lab sets zones of its own
    tmp = Path(tempfile.mkdtemp(prefix="kctl-e2e-examples-"))
    t_first = time.monotonic()
    try:
        for ns, files, _, _ in EXAMPLE_SETS:
            lab.kctl("create", "namespace", ns)
            for f in files:
                docs = [adapt(f, d) for d in yaml.safe_load_all((EXAMPLES / f).read_text()) if d]
                out = tmp / f.replace("/", "_")
                out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
                lab.kctl("apply", "-n", ns, "-f", str(out))
        t0 = time.monotonic()

        pending_box = {}

        def check():
            pending = {}
            for ns, _, want, on_node in EXAMPLE_SETS:
                ps = pods(lab, "", ns)
                good = [p for p in ps if ready(p) and (on_node is None or p.spec.node_name == on_node)]
                if len(good) != want or len(ps) != want:
                    pending[ns] = [(p.metadata.name, p.status.phase, p.spec.node_name, p.status.reason)
                                   for p in ps]
            pending_box["last"] = pending
            return not pending

        try:
            wait_for("every example pod Running and Ready", check, 120, interval=1)
        except AssertionError:
            raise AssertionError(f"not Running+Ready: {pending_box.get('last')}") from None
        total = sum(want for _, _, want, _ in EXAMPLE_SETS)
        print(f"\n{total} example pods in {len(EXAMPLE_SETS)} namespaces Running and Ready "
              f"{time.monotonic() - t_first:.1f}s after the first apply, "
              f"{time.monotonic() - t0:.1f}s after the last")
        # The Services the examples define got their endpoints (pod IPs of ready pods).
        eps = lab.api(lambda c: c.get("Endpoints", "hello", "ex-access"))
        addrs = {a.ip for s in eps.subsets for a in s.addresses}
        assert addrs == {p.status.pod_ip for p in pods(lab, "tier=backend", "ex-access")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_example_namespaces(lab)
        lab.kctl("label", "nodes", "node3", *(kv.split("=")[0] + "-" for kv in NODE3_LABELS), check=False)


def _remove_example_namespaces(lab):
    names = [ns for ns, *_ in EXAMPLE_SETS]
    for ns in names:  # pods first with a short grace: busybox `sh` as PID 1 ignores TERM
        for p in pods(lab, "", ns):
            try:
                lab.api(lambda c, p=p: c.delete("Pod", p.metadata.name, ns, grace_period=1))
            except Exception:  # noqa: BLE001 - already gone / owner recreating
                pass
    lab.kctl("delete", "namespace", *names, "--no-wait", check=False)
    wait_for("example pods gone", lambda: not any(pods(lab, "", ns) for ns in names), 90, interval=1)
