"""Regenerate machinery/pb/*_pb2*.py and machinery/pb/docs.json from proto/*.proto.

The proto sources live in proto/ but are compiled under the virtual path
machinery/pb/ (protoc's `-Ivirtual=physical`), so generated modules import
each other as `from machinery.pb import meta_pb2` with no post-processing.

The generated `_pb2` modules carry no comments, yet the OpenAPI documents
(machinery/openapi.py) need the field documentation. So protoc also writes a
descriptor set with source info into a temporary file, and this script
distils it into docs.json: `{"kctl.v1.Message": "comment", "kctl.v1.Message.field":
"comment"}` — each message's and field's leading comment (or, lacking one,
its trailing comment), with the `// ` prefixes removed and lines kept.

Usage: python scripts/genproto.py [--check]
  --check  generate into a temporary directory and exit 1 if the checked-in
           files differ (used by tests/unit/test_genproto.py).
"""
from __future__ import annotations

import filecmp
import json
import pathlib
import shutil
import sys
import tempfile

from google.protobuf import descriptor_pb2
from grpc_tools import protoc
import grpc_tools

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PKG = "machinery/pb"
DOCS = "docs.json"
GENERATED = ("*_pb2*.py*", DOCS)
WKT = pathlib.Path(grpc_tools.__file__).parent / "_proto"
# Field numbers in descriptor.proto that SourceCodeInfo paths walk through.
_FILE_MESSAGES, _MESSAGE_FIELDS, _MESSAGE_NESTED = 4, 2, 3


def _comment(location) -> str:
    text = location.leading_comments or location.trailing_comments
    lines = [line[1:] if line.startswith(" ") else line for line in text.splitlines()]
    return "\n".join(lines).strip("\n")


def _message_paths(fdp):
    """(source path, message descriptor, full name) for every message, nested ones too."""
    stack = [((_FILE_MESSAGES, i), m, f"{fdp.package}.{m.name}") for i, m in enumerate(fdp.message_type)]
    while stack:
        path, msg, name = stack.pop()
        yield path, msg, name
        stack.extend(((*path, _MESSAGE_NESTED, i), n, f"{name}.{n.name}")
                     for i, n in enumerate(msg.nested_type))


def docs_from_descriptor_set(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, str]:
    """Message and field comments by full name, from a descriptor set with source info."""
    docs: dict[str, str] = {}
    for fdp in fds.file:
        locations = {tuple(loc.path): loc for loc in fdp.source_code_info.location}
        for path, msg, name in _message_paths(fdp):
            if path in locations and _comment(locations[path]):
                docs[name] = _comment(locations[path])
            for j, f in enumerate(msg.field):
                loc = locations.get((*path, _MESSAGE_FIELDS, j))
                if loc is not None and _comment(loc):
                    docs[f"{name}.{f.name}"] = _comment(loc)
    return dict(sorted(docs.items()))


def generate(out_root: pathlib.Path) -> list[pathlib.Path]:
    protos = sorted(PROTO_DIR.glob("*.proto"))
    out = out_root / OUT_PKG
    out.mkdir(parents=True, exist_ok=True)
    descriptor_set = out_root / "descriptors.pb"
    args = [
        "protoc",
        f"-I{OUT_PKG}={PROTO_DIR}",
        f"-I{WKT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        "--include_source_info",
        f"--descriptor_set_out={descriptor_set}",
    ] + [str(p) for p in protos]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    docs = docs_from_descriptor_set(fds)
    (out / DOCS).write_text(json.dumps(docs, indent=1, ensure_ascii=False) + "\n")
    return sorted(p for pattern in GENERATED for p in out.glob(pattern))


def _checked_in(target: pathlib.Path) -> list[pathlib.Path]:
    return [p for pattern in GENERATED for p in target.glob(pattern)]


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
            for dst in _checked_in(target):
                if dst.name not in names:
                    stale.append(dst.name)
            if stale:
                print("stale generated code (run python scripts/genproto.py):", ", ".join(sorted(stale)))
                return 1
            print("generated code is up to date")
            return 0
        for old in _checked_in(target):
            old.unlink()
        for p in generated:
            shutil.copy(p, target / p.name)
        print(f"generated {len(generated)} files into {OUT_PKG}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
