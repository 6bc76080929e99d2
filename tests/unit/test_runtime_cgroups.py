"""Which cgroup directories the runtime manages, on v1/hybrid and pure v2 hosts."""
from pathlib import Path

from nodeagent import cgroups, runtime


def _hybrid(root: Path) -> None:
    for h in ("cpu", "memory", "pids", "unified"):
        (root / h).mkdir(parents=True)
    (root / "cpuacct").symlink_to(root / "cpu")  # v1 co-mounts appear as symlinks


def _pure_v2(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "system.slice").mkdir()


def test_hybrid_host_has_one_dir_per_hierarchy(tmp_path, monkeypatch):
    cg = tmp_path / "cg"
    _hybrid(cg)
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", cg)
    rt = runtime.Runtime(tmp_path / "rt", cgroup_parent="kctl/node1")
    assert rt.cgroup_dirs("abc") == [cg / h / "kctl/node1/abc" for h in ("cpu", "memory", "pids", "unified")]


def test_pure_v2_host_uses_the_root_only(tmp_path, monkeypatch):
    _pure_v2(tmp_path)
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    rt = runtime.Runtime(tmp_path / "rt", cgroup_parent="kctl/node1")
    assert rt.cgroup_dirs("abc") == [tmp_path / "kctl/node1/abc"]
    assert rt.cgroup_dirs() == [tmp_path / "kctl/node1"]


def test_oom_detected_from_v2_memory_events(tmp_path, monkeypatch):
    _pure_v2(tmp_path)
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    rt = runtime.Runtime(tmp_path / "rt", cgroup_parent="kctl")
    cg = tmp_path / "kctl" / "c1"
    cg.mkdir(parents=True)
    (cg / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    assert rt.oom_killed("c1") is False
    (cg / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert rt.oom_killed("c1") is True


def test_prune_removes_empty_parent_on_v2(tmp_path, monkeypatch):
    _pure_v2(tmp_path)
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    rt = runtime.Runtime(tmp_path / "rt", cgroup_parent="kctl/node1")
    (tmp_path / "kctl" / "node1").mkdir(parents=True)
    rt.prune_cgroup_parent()
    assert not (tmp_path / "kctl").exists()
    assert (tmp_path / "system.slice").exists()
