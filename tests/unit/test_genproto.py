"""The checked-in generated protobuf modules match proto/*.proto."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "genproto.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_detects_stale_code(tmp_path, monkeypatch):
    """--check must fail when a generated file differs (the guard can fail)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("genproto", ROOT / "scripts" / "genproto.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # Point the script at a copy of the tree whose generated code is edited.
    fake_root = tmp_path / "root"
    (fake_root / "machinery" / "pb").mkdir(parents=True)
    for p in (ROOT / "machinery" / "pb").glob("*_pb2*.py*"):
        (fake_root / "machinery" / "pb" / p.name).write_bytes(p.read_bytes())
    victim = fake_root / "machinery" / "pb" / "core_pb2.py"
    victim.write_text(victim.read_text() + "\n# edited\n")
    monkeypatch.setattr(mod, "ROOT", fake_root)
    monkeypatch.setattr(sys, "argv", ["genproto.py", "--check"])
    assert mod.main() == 1
