"""The checked-in generated protobuf modules and docs.json match proto/*.proto."""
import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _genproto():
    spec = importlib.util.spec_from_file_location("genproto", ROOT / "scripts" / "genproto.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_code_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "genproto.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("victim", ["core_pb2.py", "docs.json"])
def test_check_detects_stale_code(tmp_path, monkeypatch, capsys, victim):
    """--check must fail when a generated file differs (the guard can fail)."""
    mod = _genproto()
    # Point the script at a copy of the tree whose generated code is edited.
    fake_root = tmp_path / "root"
    (fake_root / "machinery" / "pb").mkdir(parents=True)
    for pattern in mod.GENERATED:
        for p in (ROOT / "machinery" / "pb").glob(pattern):
            (fake_root / "machinery" / "pb" / p.name).write_bytes(p.read_bytes())
    path = fake_root / "machinery" / "pb" / victim
    path.write_text(path.read_text() + "\n")
    monkeypatch.setattr(mod, "ROOT", fake_root)
    monkeypatch.setattr(sys, "argv", ["genproto.py", "--check"])
    assert mod.main() == 1
    assert victim in capsys.readouterr().out


def test_docs_carry_message_and_field_comments():
    docs = json.loads((ROOT / "machinery" / "pb" / "docs.json").read_text())
    assert docs["kctl.v1.IntOrString"].startswith("IntOrString is written in manifests")
    # a trailing comment is used when a field has no leading one
    assert docs["kctl.v1.ListRequest.namespace"] == "empty: all namespaces"
    assert all(not line.startswith("//") for text in docs.values() for line in text.splitlines())
