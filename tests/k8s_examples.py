"""The Kubernetes example manifests the compatibility tests apply: the
directory `../shared/k8s-examples` beside the checkout, or $KCTL_K8S_EXAMPLES.

One place for every test that reads them.  Without them those tests fail
(they do not skip: the README's claim that every example applies would go
untested), each with the same message naming where they were looked for."""
from __future__ import annotations

import os
import pathlib

import pytest

from machinery import codec

REPO = pathlib.Path(__file__).resolve().parents[1]
DIR = pathlib.Path(os.environ.get("KCTL_K8S_EXAMPLES") or REPO.parent / "shared" / "k8s-examples")
MISSING = (f"the Kubernetes examples are not at {DIR}: put them at ../shared/k8s-examples beside the "
           f"checkout or set KCTL_K8S_EXAMPLES")


def require() -> pathlib.Path:
    """DIR, or this test fails saying where the examples were looked for."""
    if not DIR.is_dir():
        pytest.fail(MISSING, pytrace=False)
    return DIR


def files() -> list[str]:
    """Every example manifest, as a path relative to DIR, sorted ([] without DIR)."""
    return sorted(str(p.relative_to(DIR)) for p in DIR.rglob("*.yaml")) if DIR.is_dir() else []


def document_params() -> list:
    """One pytest.param per document of every manifest, with the id `file#index`;
    without DIR one param (None, id "k8s-examples-missing") for a test to
    `require()` on, so the missing directory is a failure, not an empty set."""
    if not DIR.is_dir():
        return [pytest.param(None, id="k8s-examples-missing")]
    return [pytest.param(doc, id=f"{rel}#{i}")
            for rel in files() for i, doc in enumerate(codec.load_documents((DIR / rel).read_text()))]
