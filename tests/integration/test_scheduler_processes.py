"""`kctl-scheduler` processes on a real apiserver: two with --leader-elect,
the leader killed (SIGKILL, no lease release) and the standby binding the
pods created afterwards; one with --config serving two profiles; one with a
bad --config refusing to start."""
import asyncio
import os
import signal
import subprocess
import sys

from scheduler import hollow
from tests.cluster import REPO, free_port


async def until(pred, what, attempts=600, delay=0.05):
    for _ in range(attempts):
        if await pred():
            return
        await asyncio.sleep(delay)
    raise AssertionError(f"never reached: {what}")


def start(target, identity, tmp_path, metrics_port, args=None):
    log = open(tmp_path / f"{identity}.log", "ab")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = ["--leader-elect", "--identity", identity, "--lease-duration", "3", "--renew-deadline", "2",
            "--retry-period", "0.5"] if args is None else args
    return subprocess.Popen([sys.executable, "-m", "scheduler.main", "--apiserver", target, *args,
                             "--metrics-listen", f"127.0.0.1:{metrics_port}"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def scrape(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


async def test_standby_process_takes_over_after_leader_is_killed(client, apiserver, tmp_path):
    ports = {name: free_port() for name in ("sched-a", "sched-b")}
    procs = {name: start(apiserver.target, name, tmp_path, ports[name]) for name in ports}
    try:
        await client.create(hollow.node("n1", cpu="8"))
        await client.create(hollow.pod("before"))

        async def bound(name):
            return (await client.get("Pod", name, "default")).spec.node_name == "n1"
        await until(lambda: bound("before"), "bound by the leader")
        leader = (await client.get("Lease", "kube-scheduler", "kube-system")).spec.holder_identity
        assert leader in procs

        async def counted():
            text = await asyncio.to_thread(scrape, ports[leader])
            return ('kctl_scheduler_schedule_attempts_total{result="scheduled"} 1.0' in text
                    and "kctl_scheduler_e2e_scheduling_duration_seconds_count 1.0" in text)
        await until(counted, "the leader's metrics count the binding")
        os.kill(procs[leader].pid, signal.SIGKILL)
        procs[leader].wait()
        for i in range(5):
            await client.create(hollow.pod(f"after-{i}"))
        for i in range(5):
            await until(lambda i=i: bound(f"after-{i}"), f"after-{i} bound by the standby")
        holder = (await client.get("Lease", "kube-scheduler", "kube-system")).spec.holder_identity
        assert holder != leader and holder in procs
    finally:
        stop(procs.values())


CONFIG = """\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: no-affinity
  plugins:
    score:
      disabled: [{name: NodeAffinity}]
"""


async def test_config_file_profiles_decide_by_scheduler_name(client, apiserver, tmp_path):
    cfg = tmp_path / "sched.yaml"
    cfg.write_text(CONFIG)
    proc = start(apiserver.target, "profiles", tmp_path, free_port(), ["--config", str(cfg)])
    try:
        await client.create(hollow.node("a", labels={"zone": "z1"}))
        await client.create(hollow.node("b", labels={"zone": "z2"}))
        await client.create(hollow.pod("busy", cpu="2", memory="2Gi", node_name="a"))
        for name, sched in (("dflt", ""), ("other", "no-affinity")):
            await client.create(hollow.prefer(hollow.pod(name, scheduler_name=sched), 1, [("zone", "In", ["z1"])]))

        async def node_of(name):
            return (await client.get("Pod", name, "default")).spec.node_name

        await until(lambda: node_of("dflt"), "dflt bound")
        await until(lambda: node_of("other"), "other bound")
        assert (await node_of("dflt"), await node_of("other")) == ("a", "b")
    finally:
        stop([proc])


def test_bad_config_file_refuses_to_start(tmp_path):
    cfg = tmp_path / "sched.yaml"
    cfg.write_text(CONFIG.replace("NodeAffinity", "NodeAfinity"))
    out = subprocess.run([sys.executable, "-m", "scheduler.main", "--apiserver", "127.0.0.1:1", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                         timeout=60)
    assert out.returncode == 1
    assert 'profiles[1].plugins.score.disabled[0].name: Unsupported value: "NodeAfinity"' in out.stderr
