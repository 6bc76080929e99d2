"""The jsonpath subset of `kctl get -o jsonpath=...`."""
from __future__ import annotations

import pytest

from kubectlish.jsonpath import JSONPathError, render

OBJ = {"kind": "List", "items": [
    {"metadata": {"name": "a", "labels": {"kubernetes.io/hostname": "n1"}},
     "spec": {"containers": [{"image": "nginx:1"}, {"image": "side:2"}], "replicas": 3, "paused": False}},
    {"metadata": {"name": "b", "labels": {}}, "spec": {"containers": [{"image": "busybox"}]}},
]}


@pytest.mark.parametrize("template,want", [
    ("{.items[0].metadata.name}", "a"),
    ("{.items[*].metadata.name}", "a b"),
    ("{.items[-1].spec.containers[0].image}", "busybox"),
    ("{.items[0].spec.containers[*].image}", "nginx:1 side:2"),
    ("{.items[0].spec.replicas}/{.items[0].spec.paused}", "3/false"),
    ("{.items[0].metadata.labels['kubernetes.io/hostname']}", "n1"),
    ('{range .items[*]}{.metadata.name}{"\\n"}{end}', "a\nb\n"),
    ("name={.items[1].metadata.labels}", "name={}"),
    ("{.items[5].metadata.name}", ""),
])
def test_render(template, want):
    assert render(template, OBJ) == want


def test_errors():
    with pytest.raises(JSONPathError):
        render("{range .items[*]}{.x}", OBJ)
    with pytest.raises(JSONPathError):
        render("{.items[0]..name}", OBJ)
