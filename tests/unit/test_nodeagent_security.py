"""securityContext on the node (nodeagent/security.py, seccomp.py, fsgroup.py)
and in the OCI spec runc gets (nodeagent/ocispec.py)."""
from __future__ import annotations

import os
import stat

import pytest

from machinery import codec
from nodeagent import fsgroup, ocispec, seccomp, security
from nodeagent.containers import ContainerConfig
from nodeagent.errors import ContainerConfigError


def pod(containers=None, **spec):
    return codec.from_dict({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
                            "spec": {"containers": containers or [{"name": "c", "image": "busybox"}], **spec}})


def cfg_of(p, image_user="", lowerdirs=(), options=None):
    got = security.config(p, p.spec.containers[0], image_user, list(lowerdirs), options)
    return ocispec.build_spec(ContainerConfig(id="id", name="c", args=["sh"], **got), "/rootfs", "/kctl/id"), got


@pytest.fixture
def image(tmp_path):
    """An image layer with /etc/passwd and /etc/group."""
    etc = tmp_path / "layer" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/sh\n"
                                "app:x:1000:1000::/home/app:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nwww:x:33:\napp:x:1000:\naudio:x:29:app,www\n")
    return [str(tmp_path / "layer")]


def test_defaults_are_containerds_caps_runtime_default_seccomp_and_root():
    spec, got = cfg_of(pod())
    proc = spec["process"]
    assert proc["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert proc["capabilities"]["bounding"] == security.DEFAULT_CAPS
    assert "ambient" not in proc["capabilities"]
    assert proc["noNewPrivileges"] is False                    # allowPrivilegeEscalation unset
    assert spec["root"]["readonly"] is False
    sec = spec["linux"]["seccomp"]
    assert sec["defaultAction"] == "SCMP_ACT_ERRNO" and sec["defaultErrnoRet"] == 1
    allowed = {n for r in sec["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r for n in r["names"]}
    assert {"read", "chown", "setuid"} <= allowed
    assert not {"unshare", "mount", "setns", "reboot"} & allowed      # CAP_SYS_ADMIN / CAP_SYS_BOOT only
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]


def test_seccomp_default_off_and_explicit_profiles(tmp_path):
    off = security.Options(seccomp_default=False)
    assert "seccomp" not in cfg_of(pod(), options=off)[0]["linux"]
    explicit = pod(securityContext={"seccompProfile": {"type": "RuntimeDefault"}})
    assert "seccomp" in cfg_of(explicit, options=off)[0]["linux"]
    unconfined = pod([{"name": "c", "image": "b", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}],
                     securityContext={"seccompProfile": {"type": "RuntimeDefault"}})
    assert "seccomp" not in cfg_of(unconfined)[0]["linux"]              # the container's wins
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "audit.json").write_text('{"defaultAction": "SCMP_ACT_LOG"}')
    local = pod(securityContext={"seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"}})
    opts = security.Options(seccomp_root=str(tmp_path))
    assert cfg_of(local, options=opts)[0]["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_LOG", "syscalls": []}
    missing = pod(securityContext={"seccompProfile": {"type": "Localhost", "localhostProfile": "nope.json"}})
    with pytest.raises(ContainerConfigError, match="failed to load seccomp profile"):
        cfg_of(missing, options=opts)


def test_seccomp_rules_follow_the_containers_capabilities():
    admin = seccomp.runtime_default(["CAP_SYS_ADMIN"])
    names = {n for r in admin["syscalls"] for n in r["names"]}
    assert {"unshare", "mount", "clone3"} <= names
    assert not any(r.get("errnoRet") == 38 for r in admin["syscalls"])   # clone3 ENOSYS only without SYS_ADMIN
    plain = seccomp.runtime_default([])
    assert any(r["names"] == ["clone3"] and r["errnoRet"] == 38 for r in plain["syscalls"])
    arm = seccomp.resolve(seccomp._default_profile(), [], machine="aarch64", kernel=(6, 1))
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert any("set_tls" in r["names"] for r in arm["syscalls"])
    old = seccomp.resolve(seccomp._default_profile(), [], machine="x86_64", kernel=(4, 4))
    assert not any("ptrace" in r["names"] for r in old["syscalls"])     # minKernel 4.8


@pytest.mark.parametrize("caps, want", [
    ({"drop": ["ALL"]}, []),
    ({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, ["CAP_NET_BIND_SERVICE"]),
    ({"add": ["NET_ADMIN", "CAP_SYS_TIME"], "drop": ["CHOWN"]},
     [c for c in security.DEFAULT_CAPS if c != "CAP_CHOWN"] + ["CAP_NET_ADMIN", "CAP_SYS_TIME"]),
    ({"add": ["ALL"], "drop": ["SYS_ADMIN"]}, [c for c in security.all_caps() if c != "CAP_SYS_ADMIN"]),
])
def test_capabilities_add_drop_all(caps, want):
    p = pod([{"name": "c", "image": "b", "securityContext": {"capabilities": caps}}])
    assert cfg_of(p)[0]["process"]["capabilities"]["effective"] == want


def test_hardened_container():
    p = pod([{"name": "c", "image": "b", "securityContext": {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsUser": 1000, "runAsGroup": 3000}}],
        securityContext={"supplementalGroups": [4000], "fsGroup": 2000, "runAsUser": 5,
                         "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 2048"}]})
    spec, _ = cfg_of(p)
    assert spec["process"]["user"] == {"uid": 1000, "gid": 3000, "additionalGids": [3000, 4000, 2000]}
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["root"]["readonly"] is True
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_local_port_range": "1024 2048"}


def test_privileged_container_gets_everything():
    spec, _ = cfg_of(pod([{"name": "c", "image": "b", "securityContext": {"privileged": True}}]))
    assert spec["process"]["capabilities"]["bounding"] == security.all_caps()
    assert "seccomp" not in spec["linux"] and "maskedPaths" not in spec["linux"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert any(d["path"] == "/dev/null" and d["type"] == "c" for d in spec["linux"]["devices"])
    sysfs = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sysfs["options"]


def test_users_from_the_image(image):
    assert security.resolve_user("www", image) == (33, 33, "www")
    assert security.resolve_user("1000", image) == (1000, 1000, "app")
    assert security.resolve_user("4242", image) == (4242, 0, "")
    assert security.resolve_user("app:audio", image) == (1000, 29, "app")
    assert security.resolve_user("ghost", image) == (None, None, "ghost")
    _, got = cfg_of(pod(), "app", image)
    assert got["user"] == (1000, 1000) and got["additional_gids"] == [1000, 29]
    with pytest.raises(ContainerConfigError, match="unable to find user ghost"):
        cfg_of(pod(), "ghost", image)


@pytest.mark.parametrize("user, sc, message", [
    ("", {"runAsNonRoot": True}, 'container has runAsNonRoot and image will run as root '
                                 '(pod: "p_ns(u-1)", container: c)'),
    ("0:0", {"runAsNonRoot": True}, "image will run as root"),
    ("ghost", {"runAsNonRoot": True}, "image has non-numeric user (ghost), cannot verify user is non-root"),
    ("app", {"runAsNonRoot": True, "runAsUser": 0}, "container's runAsUser breaks non-root policy"),
])
def test_run_as_non_root_refused_with_the_kubelets_messages(image, user, sc, message):
    p = pod([{"name": "c", "image": "b", "securityContext": sc}])
    with pytest.raises(ContainerConfigError) as exc:
        cfg_of(p, user, image)
    assert message in str(exc.value)


def test_run_as_non_root_allowed(image):
    for user, sc, psc in (("app", {"runAsNonRoot": True}, {}), ("", {}, {"runAsNonRoot": True, "runAsUser": 7}),
                          ("", {"runAsNonRoot": False}, {"runAsNonRoot": True})):
        p = pod([{"name": "c", "image": "b", "securityContext": sc}], securityContext=psc)
        cfg_of(p, user, image)


def test_unsafe_sysctls_refused_unless_allowed():
    p = pod(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]})
    with pytest.raises(ContainerConfigError, match='forbidden sysctl: "kernel.msgmax" not allowlisted'):
        cfg_of(p)
    spec, _ = cfg_of(p, options=security.Options(allowed_unsafe_sysctls=["kernel.msg*"]))
    assert spec["linux"]["sysctl"] == {"kernel.msgmax": "65536"}


def test_a_config_without_security_keeps_runcs_defaults():
    spec = ocispec.build_spec(ContainerConfig(id="id", name="c", args=["sh"]), "/r", "/kctl/id")
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["capabilities"]["bounding"] == ocispec.DEFAULT_CAPS and "seccomp" not in spec["linux"]


def test_fs_group_owns_volumes_with_setgid(tmp_path):
    vol = tmp_path / "v"
    (vol / "sub").mkdir(parents=True)
    (vol / "sub" / "f").write_text("x")
    os.chmod(vol / "sub" / "f", 0o600)
    (vol / "link").symlink_to("sub/f")
    p = pod(volumes=[{"name": "v", "emptyDir": {}}, {"name": "h", "hostPath": {"path": str(vol)}}],
            securityContext={"fsGroup": 2345})
    fsgroup.apply(p, p.spec.volumes[1], str(vol), False)            # hostPath: never changed
    assert os.stat(vol).st_gid != 2345
    fsgroup.apply(p, p.spec.volumes[0], str(vol), False)
    for path in (vol, vol / "sub"):
        st = os.stat(path)
        assert st.st_gid == 2345 and st.st_mode & stat.S_ISGID and st.st_mode & 0o070 == 0o070
    f = os.stat(vol / "sub" / "f")
    assert f.st_gid == 2345 and stat.S_IMODE(f.st_mode) == 0o660
    assert os.lstat(vol / "link").st_gid == 2345
    # the root already matches: not walked again unless the files changed
    os.chmod(vol / "sub" / "f", 0o600)
    fsgroup.apply(p, p.spec.volumes[0], str(vol), False)
    assert stat.S_IMODE(os.stat(vol / "sub" / "f").st_mode) == 0o600
    fsgroup.apply(p, p.spec.volumes[0], str(vol), True)
    assert stat.S_IMODE(os.stat(vol / "sub" / "f").st_mode) == 0o660


def test_fs_group_through_volume_setup_survives_resyncs(tmp_path):
    from nodeagent import volumes
    from nodeagent.envvars import Sources
    p = pod(volumes=[{"name": "scratch", "emptyDir": {}},
                     {"name": "cfg", "configMap": {"name": "cm"}}], securityContext={"fsGroup": 3456})
    cm = codec.from_dict({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"},
                          "data": {"k": "v"}})
    sources = Sources(config_maps={"cm": cm})
    volumes.setup_volumes(p, str(tmp_path), sources, "10.0.0.1", "10.244.0.2")
    scratch, cfg = volumes.volume_dir(str(tmp_path), "scratch"), volumes.volume_dir(str(tmp_path), "cfg")
    (open(os.path.join(scratch, "mine"), "w")).close()
    os.chmod(os.path.join(scratch, "mine"), 0o600)
    volumes.setup_volumes(p, str(tmp_path), sources, "10.0.0.1", "10.244.0.2")    # a resync
    st = os.stat(scratch)
    assert st.st_gid == 3456 and stat.S_IMODE(st.st_mode) == 0o2777
    assert stat.S_IMODE(os.stat(os.path.join(scratch, "mine")).st_mode) == 0o600   # not walked again
    k = os.stat(os.path.join(cfg, "k"))
    assert k.st_gid == 3456 and stat.S_IMODE(k.st_mode) == 0o644 | 0o440


def test_x32_only_where_the_kernel_runs_it():
    """x32 costs runc a third of the filter's compile at every start: left out where the kernel
    has no x32 ABI; a profile's own `architectures` list stays as written."""
    prof = seccomp._default_profile()
    with_x32 = seccomp.resolve(prof, [], machine="x86_64", kernel=(6, 1), x32=True)
    assert with_x32["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    without = seccomp.resolve(prof, [], machine="x86_64", kernel=(6, 1), x32=False)
    assert without["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert without["syscalls"] == with_x32["syscalls"]
    listed = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]}
    assert seccomp.resolve(listed, [], machine="x86_64", x32=False)["architectures"] == [
        "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]


def test_x32_probe_answers_this_kernel():
    import ctypes
    import os
    import platform
    seccomp.kernel_has_x32.cache_clear()
    got = seccomp.kernel_has_x32()
    if platform.machine() != "x86_64":
        assert got is False
    else:   # the same probe by hand: x32 getpid answers our PID or fails (ENOSYS)
        assert got == (ctypes.CDLL(None, use_errno=True).syscall(seccomp.X32_GETPID) == os.getpid())
        assert seccomp.runtime_default([])["architectures"][-1] == ("SCMP_ARCH_X32" if got else "SCMP_ARCH_X86")


def test_meta_record_is_the_config_without_its_seccomp_profile():
    """meta.json keeps what asdict() gives, minus the profile (config.json holds it)."""
    import json
    from dataclasses import asdict
    from nodeagent.containers import ContainerConfig, Mount
    from nodeagent.runtime import _config_record
    cfg = ContainerConfig(id="c1", name="c", args=["sh"], mounts=[Mount("/s", "/d", True), ("/a", "/b", False)],
                          seccomp=seccomp.runtime_default([]), labels={"k": "v"}, sysctls={"net.x": "1"})
    rec = _config_record(cfg)
    assert "seccomp" not in rec
    assert json.loads(json.dumps(rec)) == json.loads(json.dumps({k: v for k, v in asdict(cfg).items() if k != "seccomp"}))
