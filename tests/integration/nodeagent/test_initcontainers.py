"""Init containers and a native sidecar on a real agent with runc (issue 12), and
examples/sidecar-proxy.yaml's pod serving through its proxy sidecar.

Two init containers and a sidecar start in order (each appends its name and a
timestamp to a shared emptyDir), the sidecar serves HTTP beside the app in the
pod's network namespace while the app runs, and on delete the app container
stops before the sidecar (their TERM traps append to a hostPath log that
outlives the pod).
"""
from __future__ import annotations

import pytest

from machinery.pb import core_pb2
from tests.integration.nodeagent.conftest import (cid_of, make_pod, needs_root, node_ready, pod_gone,
                                                  pod_where)

pytestmark = [pytest.mark.root, needs_root]

MOUNTS = [{"name": "shared", "mountPath": "/shared"}, {"name": "out", "mountPath": "/out"}]


def stamp(name: str) -> str:
    return f"echo {name} $(cut -d' ' -f1 /proc/uptime) >> /shared/order"


def waits_for_term(name: str, work: str) -> str:
    """Run work in the background; on SIGTERM append '<name>-stop' to the hostPath log and exit."""
    return f"trap 'echo {name}-stop >> /out/stops; exit 0' TERM; {stamp(name)}; {work} & wait $!; wait $!"


async def test_init_containers_then_sidecar_then_app_and_reverse_stop(api, make_node, tmp_path, privileged_default):
    node = make_node()
    await node_ready(api, node)
    out = tmp_path / "out"
    pod = make_pod("inits", node, {"name": "app", "image": "busybox", "volumeMounts": MOUNTS,
                                   "command": ["sh", "-c", waits_for_term("app", "sleep 3600")]},
                   initContainers=[
                       {"name": "one", "image": "busybox", "volumeMounts": MOUNTS,
                        "command": ["sh", "-c", stamp("one") + "; sleep 0.3"]},
                       {"name": "proxy", "image": "busybox", "restartPolicy": "Always", "volumeMounts": MOUNTS,
                        "command": ["sh", "-c", "mkdir -p /www; echo proxied > /www/index.html; "
                                    + waits_for_term("proxy", "httpd -f -p 8080 -h /www")],
                        "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}},
                       {"name": "two", "image": "busybox", "volumeMounts": MOUNTS,
                        "command": ["sh", "-c", "wget -qO- http://127.0.0.1:8080/ > /shared/two-saw; "
                                    + stamp("two")]}],
                   volumes=[{"name": "shared", "emptyDir": {}},
                            {"name": "out", "hostPath": {"path": str(out), "type": "DirectoryOrCreate"}}])
    await api.create(pod)

    def up(p: core_pb2.Pod) -> bool:
        return bool(p.status.container_statuses) and p.status.container_statuses[0].state.HasField("running")
    p = await pod_where(api, "inits", up, "app running", node, timeout=120)
    assert p.status.phase == "Running"
    assert {c.type: c.status for c in p.status.conditions}["Initialized"] == "True"
    inits = {c.name: c for c in p.status.init_container_statuses}
    assert inits["one"].state.terminated.reason == "Completed" and inits["proxy"].state.HasField("running")
    assert inits["proxy"].started
    res = node.runc_exec(cid_of(p, "app"), "sh", "-c", "cat /shared/order; cat /shared/two-saw; "
                         "wget -qO- http://127.0.0.1:8080/")
    lines = res.stdout.split("\n")
    order = [ln.split() for ln in lines[:4]]
    assert [o[0] for o in order] == ["one", "proxy", "two", "app"], lines
    assert [float(o[1]) for o in order] == sorted(float(o[1]) for o in order)
    assert lines[4] == "proxied" and lines[5] == "proxied"     # the sidecar served two, then the app
    await api.delete(core_pb2.Pod, "inits", "default", grace_period=10)
    await pod_gone(api, "inits", node)
    assert (out / "stops").read_text().split() == ["app-stop", "proxy-stop"]


async def test_sidecar_proxy_example_relays_to_the_loopback_app(api, make_node):
    """examples/sidecar-proxy.yaml's pod template: the app answers only through the proxy."""
    import pathlib

    from machinery import codec
    from machinery.tables import pod_status
    node = make_node()
    await node_ready(api, node)
    path = pathlib.Path(__file__).resolve().parents[3] / "examples" / "sidecar-proxy.yaml"
    template = codec.load_documents(path.read_text())[0]["spec"]["template"]["spec"]
    pod = make_pod("meshed", node, *template.pop("containers"), **template)
    await api.create(pod)
    seen: list = []

    def serving(p: core_pb2.Pod) -> bool:
        seen[:] = [pod_status(p), p.status]
        return pod_status(p)[:2] == ("2/2", "Running")
    try:
        p = await pod_where(api, "meshed", serving, "2/2 Running", node, timeout=90)
    except AssertionError as exc:
        raise AssertionError(f"{seen}") from exc
    res = node.runc_exec(cid_of(p, "app"), "wget", "-qO-", f"http://{p.status.pod_ip}:80/")
    assert res.stdout.strip() == "hello from meshed, via the proxy", res
    direct = node.runc_exec(cid_of(p, "app"), "wget", "-qO-", "-T", "2", f"http://{p.status.pod_ip}:8080/")
    assert direct.returncode != 0                      # the app itself listens on loopback only
    await api.delete(core_pb2.Pod, "meshed", "default", grace_period=5)
    await pod_gone(api, "meshed", node)
