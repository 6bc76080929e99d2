"""Regenerate apiserver/http/k8s_descriptors.py: the protobuf descriptors of
Kubernetes' own wire format for the kinds kctl serves.

kubectl's typed calls (`kubectl create deployment`, `drain`'s evictions)
send `application/vnd.kubernetes.protobuf` bodies encoded with
k8s.io/api's generated.proto, whose field numbers are not kctl's. This
script compiles those .proto files (from checkouts of kubernetes/api and
kubernetes/apimachinery) with grpc_tools' protoc, keeps the messages
reachable from the kinds kctl reads (ROOTS) and writes them as one
serialized FileDescriptorSet that apiserver/http/k8sproto.py loads.

Usage: python scripts/gen_k8s_wire.py [API_CHECKOUT APIMACHINERY_CHECKOUT]
(defaults: the mirrors under /work/.mirror).
"""
from __future__ import annotations

import base64
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap

from google.protobuf import descriptor_pb2

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "apiserver" / "http" / "k8s_descriptors.py"
sys.path.insert(0, str(REPO))
from apiserver.http.k8sproto import PACKAGES  # noqa: E402
from machinery import kinds  # noqa: E402

# Every kind kctl serves, plus the request-only types kubectl sends.
EXTRA_ROOTS = ["k8s.io.api.core.v1.Binding", "k8s.io.api.policy.v1.Eviction", "k8s.io.api.autoscaling.v1.Scale",
               "k8s.io.api.autoscaling.v1.HorizontalPodAutoscaler",   # served next to v2 (conversion.py)
               "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions", "k8s.io.apimachinery.pkg.runtime.Unknown",
               "k8s.io.api.authentication.v1.TokenRequest",
               # the create-only reviews (kubectl auth can-i / whoami)
               *(f"k8s.io.api.authorization.v1.{k}" for k in ("SelfSubjectAccessReview", "SubjectAccessReview",
                                                              "SelfSubjectRulesReview")),
               "k8s.io.api.authentication.v1.SelfSubjectReview"]
ROOTS = [f"{PACKAGES[i.api_version]}.{i.kind}" for i in kinds.KINDS if i.api_version in PACKAGES] + EXTRA_ROOTS
# k8s.io/api directories of the packages those roots live in (core/v1, apps/v1, ...)
API_PROTOS = sorted({r.split(".")[3] + "/" + r.split(".")[4] for r in ROOTS if r.startswith("k8s.io.api.")})
MACHINERY_PROTOS = ["pkg/api/resource", "pkg/apis/meta/v1", "pkg/runtime", "pkg/runtime/schema", "pkg/util/intstr"]


def _checkout_file(repo: pathlib.Path, path: str, dest: pathlib.Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if (repo / path).is_file():
        shutil.copy(repo / path, dest)
    else:                                   # a bare mirror: read it out of git
        dest.write_bytes(subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"], check=True,
                                        capture_output=True).stdout)


def compile_set(api: pathlib.Path, machinery: pathlib.Path) -> descriptor_pb2.FileDescriptorSet:
    """Compile the k8s.io/api packages of API_PROTOS, copying every file they import (transitively)."""
    from grpc_tools import protoc
    sources = {"k8s.io/api/": api, "k8s.io/apimachinery/": machinery}
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        todo = [f"k8s.io/api/{p}/generated.proto" for p in API_PROTOS]
        todo += [f"k8s.io/apimachinery/{p}/generated.proto" for p in MACHINERY_PROTOS]
        done: set[str] = set()
        while todo:
            rel = todo.pop()
            if rel in done:
                continue
            done.add(rel)
            prefix = next(p for p in sources if rel.startswith(p))
            _checkout_file(sources[prefix], rel[len(prefix):], root / rel)
            for line in (root / rel).read_text().splitlines():
                if line.startswith('import "k8s.io/'):
                    todo.append(line.split('"')[1])
        out = root / "set.pb"
        args = ["protoc", f"-I{root}", "--include_imports", f"--descriptor_set_out={out}",
                *[f"k8s.io/api/{p}/generated.proto" for p in API_PROTOS]]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def reachable(fds: descriptor_pb2.FileDescriptorSet) -> set[str]:
    messages = {f"{f.package}.{m.name}": m for f in fds.file for m in f.message_type}
    seen: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in seen or name not in messages:
            continue
        seen.add(name)
        for m in [messages[name], *messages[name].nested_type]:
            for field in m.field:
                if field.type_name:
                    todo.append(field.type_name.lstrip("."))
    return seen


def main(argv: list[str]) -> None:
    api = pathlib.Path(argv[0] if argv else "/work/.mirror/kubernetes+api/repo")
    machinery = pathlib.Path(argv[1] if len(argv) > 1 else "/work/.mirror/kubernetes+apimachinery/repo")
    fds = compile_set(api, machinery)
    keep = reachable(fds)
    for f in fds.file:
        kept = [m for m in f.message_type if f"{f.package}.{m.name}" in keep]
        del f.message_type[:]
        f.message_type.extend(kept)
        f.ClearField("source_code_info")
        f.ClearField("options")
    data = base64.b64encode(fds.SerializeToString()).decode()
    OUT.write_text('"""Generated by scripts/gen_k8s_wire.py from kubernetes/api and kubernetes/apimachinery\n'
                   'generated.proto: a FileDescriptorSet (base64) of the Kubernetes wire messages kctl reads.\n'
                   'Do not edit."""\n\nFILE_DESCRIPTOR_SET = (\n'
                   + "".join(f'    "{line}"\n' for line in textwrap.wrap(data, 100)) + ")\n")
    print(f"{OUT.relative_to(REPO)}: {len(keep)} messages, {len(data)} bytes of base64")


if __name__ == "__main__":
    main(sys.argv[1:])
