"""Server-side apply and field ownership (machinery/patch/ssa.py).

Scenarios are structured-merge-diff's merge tests (merge/leaf_test.go,
multiple_appliers_test.go, set_test.go, default_keys_test.go) and
Kubernetes' field manager tests (managedfields/internal/*_test.go), moved
onto kctl's kinds: their `list` keyed by name is a pod's containers, their
`struct` with `name` and `scalarField` is a pod's spec with nodeName and
hostname, their set is metadata.finalizers. Each test names its source."""
import copy

import pytest

from machinery import errors, kinds
from machinery.patch import apply_patch, ssa
from machinery.patch.fieldpath import from_fields_v1, path_string

POD = kinds.BY_KIND["Pod"]
DEPLOY = kinds.BY_KIND["Deployment"]
NOW = "2026-12-06T10:00:{:02}Z"


def pod(spec=None, **meta):
    out = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", **meta}}
    if spec is not None:
        out["spec"] = spec
    return out


def containers(*items):
    return pod({"containers": [dict(name=n, **extra) for n, extra in items]})


def run(ops, info=POD):
    """Ops: ("apply", manager, config[, force]) or ("update", manager, object)."""
    live = None
    for i, op in enumerate(ops):
        if op[0] == "apply":
            cfg = copy.deepcopy(op[2])
            live = ssa.server_side_apply(live, op[2], manager=op[1], force=op[3] if len(op) > 3 else False,
                                         info=info, now=NOW.format(i))
            assert op[2] == cfg
        else:
            new = copy.deepcopy(op[2])
            if live is not None:
                new["metadata"]["managedFields"] = live["metadata"].get("managedFields")
            live = ssa.track_update(live, new, manager=op[1], info=info, now=NOW.format(i))
    return live


def owned(obj) -> dict:
    return {e["manager"]: {path_string(p) for p in from_fields_v1(e["fieldsV1"])}
            for e in obj["metadata"].get("managedFields", [])}


def spec(obj):
    return obj["spec"]


# --------------------------------------------------------------- leaf_test.go

def test_leaf_apply_twice():
    """leaf_test.go apply_twice: the second apply's fields are the manager's set."""
    out = run([("apply", "default", pod({"nodeName": "a", "hostname": "h"})),
               ("apply", "default", pod({"nodeName": "b", "hostname": "h", "subdomain": "s"}))])
    assert spec(out) == {"nodeName": "b", "hostname": "h", "subdomain": "s"}
    assert owned(out) == {"default": {".spec.nodeName", ".spec.hostname", ".spec.subdomain"}}


def test_leaf_apply_update_apply_no_conflict():
    """leaf_test.go apply_update_apply_no_conflict: a controller's extra field survives."""
    out = run([("apply", "default", pod({"nodeName": "a", "hostname": "h"})),
               ("update", "controller", pod({"nodeName": "a", "hostname": "h", "subdomain": "s"})),
               ("apply", "default", pod({"nodeName": "b", "hostname": "h"}))])
    assert spec(out) == {"nodeName": "b", "hostname": "h", "subdomain": "s"}
    assert owned(out) == {"default": {".spec.nodeName", ".spec.hostname"},
                          "controller": {".spec.subdomain"}}


def test_leaf_apply_update_apply_with_conflict_and_force():
    """leaf_test.go apply_update_apply_with_conflict; then the same apply with force."""
    ops = [("apply", "default", pod({"nodeName": "a", "hostname": "h"})),
           ("update", "controller", pod({"nodeName": "a", "hostname": "x"}))]
    with pytest.raises(errors.Conflict) as exc:
        run(ops + [("apply", "default", pod({"nodeName": "b", "hostname": "h"}))])
    assert exc.value.http_code == 409
    assert exc.value.message == 'Apply failed with 1 conflict: conflict with "controller" using v1: .spec.hostname'
    assert [(c.reason, c.message, c.field) for c in exc.value.causes] == [
        ("FieldManagerConflict", 'conflict with "controller" using v1', ".spec.hostname")]
    out = run(ops + [("apply", "default", pod({"nodeName": "b", "hostname": "h"}), True)])
    assert spec(out) == {"nodeName": "b", "hostname": "h"}
    assert owned(out) == {"default": {".spec.nodeName", ".spec.hostname"}}


def test_conflict_message_with_several_fields_and_managers():
    """conflict.go getConflictMessage: grouped by manager, `- path` per field."""
    ops = [("apply", "default", pod({"nodeName": "a", "hostname": "h", "subdomain": "s"})),
           ("update", "edit", pod({"nodeName": "x", "hostname": "y", "subdomain": "s"})),
           ("apply", "other", pod({"nodeName": "x", "hostname": "y", "subdomain": "z"}), True),
           ("apply", "default", pod({"nodeName": "a", "hostname": "h", "subdomain": "s"}))]
    with pytest.raises(errors.Conflict) as exc:
        run(ops)
    # "edit" still shares the two fields whose value "other" did not change
    assert exc.value.message == ('Apply failed with 5 conflicts: conflicts with "edit" using v1:\n'
                                 "- .spec.hostname\n- .spec.nodeName\n"
                                 'conflicts with "other":\n'
                                 "- .spec.hostname\n- .spec.nodeName\n- .spec.subdomain")
    assert [(c.message, c.field) for c in exc.value.causes] == [
        ('conflict with "edit" using v1', ".spec.hostname"), ('conflict with "edit" using v1', ".spec.nodeName"),
        ('conflict with "other"', ".spec.hostname"), ('conflict with "other"', ".spec.nodeName"),
        ('conflict with "other"', ".spec.subdomain")]


# ------------------------------------------------- multiple_appliers_test.go

def test_multiple_appliers_remove_one():
    """multiple_appliers_test.go remove_one: each applier removes only its own items."""
    out = run([("apply", "apply-one", containers(("a", {}), ("b", {}))),
               ("apply", "apply-two", containers(("c", {}))),
               ("apply", "apply-one", containers(("a", {})))])
    assert [c["name"] for c in spec(out)["containers"]] == ["a", "c"]
    assert owned(out) == {
        "apply-one": {'.spec.containers[name="a"]', '.spec.containers[name="a"].name'},
        "apply-two": {'.spec.containers[name="c"]', '.spec.containers[name="c"].name'}}


def test_multiple_appliers_same_value_no_conflict():
    """multiple_appliers_test.go same_value_no_conflict: both share the fields."""
    out = run([("apply", "apply-one", containers(("a", {"image": "x"}))),
               ("apply", "apply-two", containers(("a", {"image": "x"})))])
    both = {'.spec.containers[name="a"]', '.spec.containers[name="a"].name',
            '.spec.containers[name="a"].image'}
    assert owned(out) == {"apply-one": both, "apply-two": both}


def test_multiple_appliers_change_value_yes_conflict():
    """multiple_appliers_test.go change_value_yes_conflict."""
    with pytest.raises(errors.Conflict) as exc:
        run([("apply", "apply-one", containers(("a", {"image": "x"}))),
             ("apply", "apply-two", containers(("a", {"image": "y"})))])
    assert exc.value.message == ('Apply failed with 1 conflict: conflict with "apply-one": '
                                 '.spec.containers[name="a"].image')


def test_unset_scalar_shared_with_applier_keeps_it():
    """multiple_appliers_test.go unset_scalar_shared_with_applier."""
    out = run([("apply", "apply-one", pod({"nodeName": "a", "hostname": "h"})),
               ("apply", "apply-two", pod({"hostname": "h"})),
               ("apply", "apply-one", pod({"nodeName": "a"}))])
    assert spec(out) == {"nodeName": "a", "hostname": "h"}
    assert owned(out) == {"apply-one": {".spec.nodeName"}, "apply-two": {".spec.hostname"}}


def test_unset_scalar_sole_owner_removes_it():
    """multiple_appliers_test.go unset_scalar_sole_owner."""
    out = run([("apply", "apply-one", pod({"nodeName": "a", "hostname": "h"})),
               ("apply", "apply-one", pod({"nodeName": "a"}))])
    assert spec(out) == {"nodeName": "a"}


def test_unset_scalar_shared_with_updater_keeps_it():
    """multiple_appliers_test.go unset_scalar_shared_with_updater. (There the
    creator also owns the struct it added; a pod's spec is a value struct in
    Kubernetes, present in every new pod, so a create does not add it.)"""
    out = run([("update", "updater", pod({"nodeName": "a", "hostname": "h"})),
               ("apply", "applier", pod({"nodeName": "a", "hostname": "h"})),
               ("apply", "applier", pod({"nodeName": "a"}))])
    assert spec(out) == {"nodeName": "a", "hostname": "h"}
    assert owned(out) == {"updater": {".spec.nodeName", ".spec.hostname"},
                          "applier": {".spec.nodeName"}}


def test_updater_claims_field():
    """multiple_appliers_test.go updater_claims_field: an Update takes a field
    it changes from the applier, without a conflict."""
    out = run([("apply", "applier", pod({"nodeName": "a", "hostname": "h"})),
               ("update", "updater", pod({"nodeName": "a", "hostname": "x"}))])
    assert owned(out) == {"applier": {".spec.nodeName"}, "updater": {".spec.hostname"}}


def ports(*numbers):
    return {"ports": [{"containerPort": n} for n in numbers]}


def test_remove_one_keep_one_with_dangling_subitem():
    """multiple_appliers_test.go remove_one_keep_one_with_dangling_subitem
    (its `value` set is the item's ports here): what apply-one drops goes
    unless another manager owns it."""
    out = run([("apply", "apply-one", containers(("a", {}), ("b", ports(80)))),
               ("apply", "apply-two", containers(("b", ports(81)))),
               ("update", "controller", containers(("a", {}), ("b", ports(80, 81, 82)))),
               ("apply", "apply-one", containers(("a", {})))])
    assert spec(out)["containers"] == [{"name": "a"}, {"name": "b", **ports(81, 82)}]
    port = '.spec.containers[name="b"].ports[containerPort={},protocol="TCP"]'
    assert owned(out) == {
        "apply-one": {'.spec.containers[name="a"]', '.spec.containers[name="a"].name'},
        "apply-two": {'.spec.containers[name="b"]', '.spec.containers[name="b"].name',
                      port.format(81), port.format(81) + ".containerPort"},
        "controller": {port.format(82), port.format(82) + ".containerPort"}}


# --------------------------------------------------------------- set_test.go

def test_set_apply_update_apply_with_overlap():
    """set_test.go apply_update_apply_with_overlap, on finalizers (a set)."""
    out = run([("apply", "default", pod(finalizers=["a", "b"])),
               ("update", "controller", pod(finalizers=["a", "b", "c"])),
               ("apply", "default", pod(finalizers=["b", "d"]))])
    assert out["metadata"]["finalizers"] == ["b", "c", "d"]
    assert owned(out) == {"default": {'.metadata.finalizers[="b"]', '.metadata.finalizers[="d"]'},
                          "controller": {'.metadata.finalizers[="c"]'}}


# ------------------------------------------------------- default_keys_test.go

def test_apply_missing_defaulted_key():
    """default_keys_test.go apply_missing_defaulted_key_A: a port without
    protocol is keyed with protocol TCP, so the two applies name the same item."""
    out = run([("apply", "one", containers(("a", {"ports": [{"containerPort": 80}]}))),
               ("apply", "two", containers(("a", {"ports": [{"containerPort": 80, "protocol": "TCP",
                                                             "name": "http"}]})))])
    assert spec(out)["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"}]
    assert '.spec.containers[name="a"].ports[containerPort=80,protocol="TCP"].name' in owned(out)["two"]


# --------------------------------------------- Kubernetes' field manager tests

def test_apply_creates_with_kubernetes_fields_v1():
    """A create by apply: one Apply entry; server metadata is never owned
    (stripmeta_test.go); the encoding is Kubernetes' FieldsV1."""
    cfg = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"spec": {"containers": [{"name": "app", "image": "nginx",
                                                          "ports": [{"containerPort": 80}]}]}}}}
    out = ssa.server_side_apply(None, cfg, manager="kubectl", force=False, info=DEPLOY, now=NOW.format(0))
    assert out["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": NOW.format(0),
        "fieldsType": "FieldsV1", "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {"f:spec": {"f:containers": {
                'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}, "f:ports": {
                    'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}}}}}}}]
    assert {k: v for k, v in out.items() if k != "metadata"} == {k: v for k, v in cfg.items() if k != "metadata"}


def test_a_create_owns_what_it_set_as_kubernetes_records_it():
    """The creator's fields on a create, with `.` only where the create added
    a pointer struct, a map or a list item (value structs exist already)."""
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
         "spec": {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
                  "template": {"spec": {"containers": [{"name": "c", "image": "i", "ports": [
                      {"containerPort": 80, "protocol": "TCP"}]}]}}}}
    out = ssa.track_update(None, d, manager="kubectl-create", info=DEPLOY, now=NOW.format(0))
    assert out["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:replicas": {}, "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}},
                                                   "f:type": {}},
                   "f:template": {"f:spec": {"f:containers": {'k:{"name":"c"}': {
                       ".": {}, "f:image": {}, "f:name": {}, "f:ports": {
                           ".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {
                               ".": {}, "f:containerPort": {}, "f:protocol": {}}}}}}}}}


def test_status_is_not_owned_on_the_main_resource():
    out = run([("update", "creator", {**pod({"nodeName": "n"}), "status": {"phase": "Pending"}})])
    assert owned(out) == {"creator": {".spec.nodeName"}}


@pytest.mark.parametrize("config,message", [
    ({"apiVersion": "apps/v1", "kind": "Pod"}, "invalid object type: apps/v1, Kind=Pod"),
    ({"kind": "Pod"}, "invalid object type: /, Kind=Pod"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"managedFields": [{}]}},
     "metadata.managedFields must be nil"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": {"bogus": 1}},
     "failed to create typed patch object (ns/p; /v1, Kind=Pod): .spec.bogus: field not declared in schema"),
    ({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"image": "x"}]}},
     'failed to create typed patch object (/; /v1, Kind=Pod): .spec.containers: element 0: associative '
     'list with keys has an element that omits all key fields ["name"] (and doesn\'t have default '
     "values for any key fields)"),
    ({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a"}, {"name": "a"}]}},
     'failed to create typed patch object (/; /v1, Kind=Pod): .spec.containers: duplicate entries for '
     'key [name="a"]'),
    ([], "error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}"),
])
def test_bad_apply_configs_are_400(config, message):
    """versioncheck.go, structuredmerge.go: what an apply config must be."""
    with pytest.raises(errors.BadRequest) as exc:
        ssa.server_side_apply(None, config, manager="m", force=False, info=POD, now=NOW.format(0))
    assert exc.value.message == message


def test_apply_needs_a_field_manager():
    with pytest.raises(errors.Invalid) as exc:
        ssa.server_side_apply(None, pod(), manager="", force=False, info=POD, now=NOW.format(0))
    assert exc.value.message == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                                 "is required for apply requests")


def test_update_with_empty_managed_fields_resets_them():
    """fieldmanager.go isResetManagedFields: `managedFields: []` clears ownership."""
    live = run([("apply", "a", pod({"nodeName": "n"}))])
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = []
    out = ssa.track_update(live, new, manager="b", info=POD, now=NOW.format(9))
    assert "managedFields" not in out["metadata"]


def test_update_managers_are_capped_into_ancient_changes():
    """capmanagers.go: beyond 10 Update entries the oldest merge into ancient-changes."""
    ops = [("update", f"m{i:02}", pod(labels={f"k{j}": "v" for j in range(i + 1)})) for i in range(12)]
    out = run(ops)
    names = [e["manager"] for e in out["metadata"]["managedFields"]]
    assert names == ["ancient-changes"] + [f"m{i:02}" for i in range(3, 12)]
    assert owned(out)["ancient-changes"] == {".metadata.labels.k0", ".metadata.labels.k1",
                                             ".metadata.labels.k2", ".metadata.labels"}


def test_apply_patch_media_type_runs_server_side_apply():
    body = b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: node-1}\n"
    out = apply_patch("application/apply-patch+yaml", None, body, POD, manager="kubectl", now=NOW.format(0))
    assert out["spec"] == {"nodeName": "node-1"} and owned(out) == {"kubectl": {".spec.nodeName"}}


@pytest.mark.parametrize("ops,expected", [
    # set_test.go apply_twice_reorder
    ([("apply", "default", pod(finalizers=["a", "b", "c", "d"])),
      ("apply", "default", pod(finalizers=["a", "d", "c", "b"]))], ["a", "d", "c", "b"]),
    # set_test.go apply_update_apply_reorder: a reorder by an Update owns nothing
    ([("apply", "default", pod(finalizers=["a", "b", "c", "d"])),
      ("update", "controller", pod(finalizers=["a", "d", "c", "b"])),
      ("apply", "default", pod(finalizers=["a", "b", "c", "d"]))], ["a", "b", "c", "d"]),
    # set_test.go apply_twice_remove
    ([("apply", "default", pod(finalizers=["a", "b", "c", "d"])),
      ("apply", "default", pod(finalizers=["a", "c"]))], ["a", "c"]),
])
def test_set_order_and_removal(ops, expected):
    out = run(ops)
    assert out["metadata"]["finalizers"] == expected
    assert owned(out) == {"default": {f'.metadata.finalizers[="{v}"]' for v in expected}}


def test_keyed_list_merge_keeps_live_only_items_in_place():
    """merge.go visitListItems: items only the live object has stay where they
    were; the applied items keep the applied order."""
    out = run([("update", "controller", containers(("x", {}), ("a", {}), ("y", {}), ("b", {}))),
               ("apply", "default", containers(("b", {}), ("a", {}), ("c", {})))])
    assert [c["name"] for c in spec(out)["containers"]] == ["x", "y", "b", "a", "c"]


def test_reapplying_the_same_config_changes_nothing():
    """A no-op apply (Updater.Apply returns no object) leaves the object and
    its managedFields, times included, exactly as they were."""
    cfg = containers(("a", {"image": "x"}))
    first = run([("apply", "default", cfg)])
    again = ssa.server_side_apply(first, cfg, manager="default", force=False, info=POD, now=NOW.format(30))
    assert again == first


def test_track_update_takes_managed_fields_sent_with_the_write():
    """decodeLiveOrNew: managedFields in the written object are used (kubectl's
    client-side-apply upgrade rewrites them with a JSON patch)."""
    live = run([("update", "kubectl-client-side-apply", pod({"nodeName": "n"}))])
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"][0]["manager"] = "kubectl"
    new["metadata"]["managedFields"][0]["operation"] = "Apply"
    out = ssa.track_update(live, new, manager="kubectl", info=POD, now=NOW.format(5))
    assert [(e["manager"], e["operation"]) for e in out["metadata"]["managedFields"]] == [("kubectl", "Apply")]


def test_numbers_compare_by_value():
    """value.Equals: `replicas: 3.0` applied over 3 changes nothing, so no conflict."""
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 3}}
    live = run([("update", "scaler", d)], info=DEPLOY)
    out = ssa.server_side_apply(live, {**d, "spec": {"replicas": 3.0}}, manager="kubectl", force=False,
                                info=DEPLOY, now=NOW.format(1))
    assert owned(out) == {"scaler": {".spec.replicas"}, "kubectl": {".spec.replicas"}}
    with pytest.raises(errors.Conflict):
        ssa.server_side_apply(live, {**d, "spec": {"replicas": True}}, manager="kubectl", force=False,
                              info=DEPLOY, now=NOW.format(1))


PORT = '.spec.containers[name="{}"].ports[containerPort={},protocol="TCP"]'


def _item(name, *numbers):
    own = {f'.spec.containers[name="{name}"]', f'.spec.containers[name="{name}"].name'}
    for n in numbers:
        own |= {PORT.format(name, n), PORT.format(name, n) + ".containerPort"}
    return own


def test_remove_one_keep_one_with_two_sub_items():
    """multiple_appliers_test.go remove_one_keep_one_with_two_sub_items."""
    out = run([("apply", "apply-one", containers(("a", {}), ("b", ports(80)))),
               ("apply", "apply-two", containers(("b", ports(81)))),
               ("apply", "apply-one", containers(("a", {})))])
    assert spec(out)["containers"] == [{"name": "a"}, {"name": "b", **ports(81)}]
    assert owned(out) == {"apply-one": _item("a"), "apply-two": _item("b", 81)}


def test_remove_one_with_dangling_subitem_keep_one():
    """multiple_appliers_test.go remove_one_with_dangling_subitem_keep_one: the
    dropped item goes whole, and the controller that owned a port in it is
    left with nothing (its entry goes)."""
    out = run([("apply", "apply-one", containers(("a", {}), ("b", ports(80)))),
               ("apply", "apply-two", containers(("a", ports(79)))),
               ("update", "controller", containers(("a", ports(79)), ("b", ports(80, 81)))),
               ("apply", "apply-one", containers(("a", {})))])
    assert spec(out)["containers"] == [{"name": "a", **ports(79)}]
    assert owned(out) == {"apply-one": _item("a"), "apply-two": _item("a", 79)}


@pytest.mark.parametrize("bad", [
    [{"manager": "m", "operation": "Patch", "fieldsType": "FieldsV1", "fieldsV1": {}}],
    [{"manager": "m", "operation": "Update", "fieldsType": "FieldsV2", "fieldsV1": {}}],
    [{"manager": "m", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"x:y": {}}}],
])
def test_malformed_managed_fields_sent_with_a_write_fall_back_to_the_live_ones(bad):
    live = run([("update", "creator", pod({"nodeName": "n"}))])
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = bad
    new["spec"]["hostname"] = "h"
    out = ssa.track_update(live, new, manager="editor", info=POD, now=NOW.format(9))
    assert owned(out) == {"creator": {".spec.nodeName"}, "editor": {".spec.hostname"}}
    with pytest.raises(errors.ApiError) as exc:
        ssa.server_side_apply(new, pod({"nodeName": "n"}), manager="a", force=False, info=POD, now=NOW.format(9))
    assert exc.value.message.startswith("failed to decode managed fields: ")


def test_an_apply_that_changes_nothing_sets_no_time():
    """managedFieldsUpdater.Apply stamps the time only when the object changed:
    a second applier of the same values shares the fields, with no time."""
    out = run([("apply", "one", pod({"nodeName": "n"})), ("apply", "two", pod({"nodeName": "n"}))])
    assert [(e["manager"], e.get("time")) for e in out["metadata"]["managedFields"]] == [
        ("two", None), ("one", NOW.format(0))]
