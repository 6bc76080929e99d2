"""securityContext enforced by real runc: a pod's securityContext resolved by
nodeagent/security.py, the OCI spec of nodeagent/ocispec.py, and what the
process inside can and cannot do."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from machinery import codec
from nodeagent import security
from nodeagent.containers import ContainerConfig
from nodeagent.runtime import Runtime

from .conftest import needs_root

pytestmark = [pytest.mark.root, needs_root]


def pod(sc: dict | None = None, psc: dict | None = None):
    c = {"name": "c", "image": "busybox", **({"securityContext": sc} if sc else {})}
    return codec.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d", "uid": "u"},
                            "spec": {"containers": [c], **({"securityContext": psc} if psc else {})}})


async def run(rt: Runtime, rootfs: Path, cid: str, script: str, sc=None, psc=None, options=None) -> tuple[int, str]:
    """Run `sh -c script` as the pod's container to its end: (exit code, output)."""
    p = pod(sc, psc)
    fields = security.config(p, p.spec.containers[0], "", [str(rootfs)], options)
    await rt.create_and_start(ContainerConfig(id=cid, name=cid, layers=[str(rootfs)], args=["sh", "-c", script],
                                              **fields))
    state = await asyncio.wait_for(rt.wait(cid), 20)
    return state.exit_code, "\n".join(e.text for e in rt.read_log(cid))


async def test_run_as_user_group_and_supplementary_groups(runtime, busybox_rootfs):
    code, out = await run(runtime, busybox_rootfs, "sec-id", "id -u; id -g; id -G",
                          sc={"runAsUser": 1000}, psc={"runAsGroup": 3000, "supplementalGroups": [4000],
                                                       "fsGroup": 2000})
    uid, gid, groups = out.splitlines()
    assert (code, uid, gid, sorted(groups.split())) == (0, "1000", "3000", ["2000", "3000", "4000"])


async def test_drop_all_capabilities_cannot_chown(runtime, busybox_rootfs):
    code, out = await run(runtime, busybox_rootfs, "sec-chown", "touch /tmp/f; chown 1234 /tmp/f && echo chowned",
                          sc={"capabilities": {"drop": ["ALL"]}})
    assert code != 0 and "Operation not permitted" in out, out
    code, out = await run(runtime, busybox_rootfs, "sec-chown-ok", "touch /tmp/f; chown 1234 /tmp/f && echo chowned")
    assert (code, out) == (0, "chowned")                        # containerd's default set has CAP_CHOWN


async def test_read_only_root_filesystem(runtime, busybox_rootfs):
    code, out = await run(runtime, busybox_rootfs, "sec-ro", "touch /x && echo wrote",
                          sc={"readOnlyRootFilesystem": True})
    assert code != 0 and "Read-only file system" in out, out


async def test_runtime_default_seccomp_refuses_unshare_and_unconfined_allows_it(runtime, busybox_rootfs):
    code, out = await run(runtime, busybox_rootfs, "sec-unshare", "unshare -U true && echo unshared")
    assert code != 0 and "Operation not permitted" in out, out
    status = "grep Seccomp: /proc/self/status"
    assert (await run(runtime, busybox_rootfs, "sec-mode", status))[1].split() == ["Seccomp:", "2"]
    code, out = await run(runtime, busybox_rootfs, "sec-unconfined", "unshare -U true && echo unshared",
                          sc={"seccompProfile": {"type": "Unconfined"}})
    assert (code, out) == (0, "unshared")
    off = security.Options(seccomp_default=False)
    assert (await run(runtime, busybox_rootfs, "sec-off", status, options=off))[1].split() == ["Seccomp:", "0"]


async def test_no_new_privileges_and_privileged(runtime, busybox_rootfs):
    nnp = "grep NoNewPrivs: /proc/self/status"
    assert (await run(runtime, busybox_rootfs, "sec-nnp", nnp, sc={"allowPrivilegeEscalation": False}))[1].split() \
        == ["NoNewPrivs:", "1"]
    assert (await run(runtime, busybox_rootfs, "sec-nnp0", nnp))[1].split() == ["NoNewPrivs:", "0"]
    code, out = await run(runtime, busybox_rootfs, "sec-priv",
                          "grep CapEff: /proc/self/status; ls /dev | grep -c . ; "
                          "touch /sys/kernel/x 2>&1 | grep -c Read-only", sc={"privileged": True})
    lines = out.splitlines()
    held = int(lines[0].split()[1], 16)
    assert [c for i, c in enumerate(security.LINUX_CAPS) if held >> i & 1] == security.all_caps()
    assert int(lines[1]) > 10                                    # the host's devices
    assert lines[2] == "0"                                       # /sys is writable (not a read-only mount)


async def test_safe_sysctl_is_set(runtime, busybox_rootfs, node_net):
    code, out = await run(runtime, busybox_rootfs, "sec-sysctl", "cat /proc/sys/kernel/shm_rmid_forced",
                          psc={"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}]})
    assert (code, out) == (0, "1")
