"""Regenerate machinery/pb/*_pb2*.py from proto/*.proto.

The proto sources live in proto/ but are compiled under the virtual path
machinery/pb/ (protoc's `-Ivirtual=physical`), so generated modules import
each other as `from machinery.pb import meta_pb2` with no post-processing.

Usage: python scripts/genproto.py [--check]
  --check  generate into a temporary directory and exit 1 if the checked-in
           modules differ (used by tests/unit/test_genproto.py).
"""
from __future__ import annotations

import filecmp
import pathlib
import shutil
import sys
import tempfile

from grpc_tools import protoc
import grpc_tools

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PKG = "machinery/pb"
WKT = pathlib.Path(grpc_tools.__file__).parent / "_proto"


def generate(out_root: pathlib.Path) -> list[pathlib.Path]:
    protos = sorted(PROTO_DIR.glob("*.proto"))
    (out_root / OUT_PKG).mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{OUT_PKG}={PROTO_DIR}",
        f"-I{WKT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
    ] + [str(p) for p in protos]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    return sorted((out_root / OUT_PKG).glob("*_pb2*.py*"))


def main() -> int:
    check = "--check" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(pathlib.Path(tmp))
        target = ROOT / OUT_PKG
        if check:
            stale = []
            names = {p.name for p in generated}
            for p in generated:
                dst = target / p.name
                if not dst.exists() or not filecmp.cmp(p, dst, shallow=False):
                    stale.append(p.name)
            for dst in target.glob("*_pb2*.py*"):
                if dst.name not in names:
                    stale.append(dst.name)
            if stale:
                print("stale generated code (run python scripts/genproto.py):", ", ".join(sorted(stale)))
                return 1
            print("generated code is up to date")
            return 0
        for old in target.glob("*_pb2*.py*"):
            old.unlink()
        for p in generated:
            shutil.copy(p, target / p.name)
        print(f"generated {len(generated)} files into {OUT_PKG}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
