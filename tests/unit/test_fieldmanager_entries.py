"""The managedFields fast path of every write (apiserver/fieldmanager.py over
machinery.patch.ssa.update_entries): the same entries as track_update, the
arguments left as they were, and the cached Struct bytes / parsed times
giving each object its own field set and time."""
from __future__ import annotations

import copy

from google.protobuf import json_format

from apiserver import registry
from apiserver.fieldmanager import FieldManager
from harness.objects import new_object
from machinery import codec, kinds
from machinery.patch import ssa

POD = kinds.BY_KIND["Pod"]
NOW = "2026-12-06T10:00:0{}Z"


def defaulted(name, **labels):
    p = new_object("Pod", name, labels=labels)
    registry.strategy(POD).default(p)
    return p


def test_update_entries_are_track_updates_managed_fields_and_leave_the_arguments_alone():
    old = codec.to_dict(FieldManager("kubectl").track(None, defaulted("a")))
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"tier": "web"}
    new["spec"]["containers"][0]["image"] = "nginx"
    before_old, before_new = copy.deepcopy(old), copy.deepcopy(new)
    for o in (None, old):
        full = ssa.track_update(o, new, manager="editor", info=POD, now=NOW.format(1))
        assert ssa.update_entries(o, new, manager="editor", info=POD, now=NOW.format(1)) == \
            full["metadata"]["managedFields"]
    assert (old, new) == (before_old, before_new)
    entries = {e["manager"]: e for e in ssa.update_entries(old, new, manager="editor", info=POD, now=NOW.format(1))}
    assert sorted(entries) == ["editor", "kubectl"]
    assert entries["editor"]["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:tier": {}}},
                                      "f:spec": {"f:containers": {'k:{"name":"main"}': {"f:image": {}}}}}


def test_each_object_gets_its_own_field_set_and_time():
    fm = FieldManager("kubectl")
    plain, labelled, again = fm.track(None, defaulted("a")), fm.track(None, defaulted("b", app="x")), \
        fm.track(None, defaulted("c"))

    def fields(p):
        return json_format.MessageToDict(p.metadata.managed_fields[0].fields_v1)
    assert "f:metadata" not in fields(plain) and fields(labelled)["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    assert fields(again) == fields(plain)
    entry = codec.to_dict(labelled)["metadata"]["managedFields"][0]
    assert entry["time"] == labelled.metadata.managed_fields[0].time.ToJsonString()
    assert entry["manager"] == "kubectl" and entry["operation"] == "Update"


def test_creates_of_one_shape_reuse_their_entries_with_their_own_time():
    def entries(p, now):
        return ssa.update_entries(None, codec.to_dict(p), manager="rs", info=POD, now=now)

    def full(p, now):
        return ssa.track_update(None, codec.to_dict(p), manager="rs", info=POD, now=now)["metadata"]["managedFields"]
    a, b = defaulted("a", app="x"), defaulted("b", app="x")
    b.metadata.uid = "u-b"                                   # server-owned: not part of the shape
    first, second = entries(a, NOW.format(1)), entries(b, NOW.format(2))
    assert first == full(a, NOW.format(1)) and second == full(b, NOW.format(2))
    assert (first[0]["time"], second[0]["time"]) == (NOW.format(1), NOW.format(2))
    other = defaulted("c", app="x", tier="web")             # another label: another field set
    assert entries(other, NOW.format(3)) == full(other, NOW.format(3))
    assert "f:tier" in entries(other, NOW.format(3))[0]["fieldsV1"]["f:metadata"]["f:labels"]
    sent = codec.to_dict(a)
    sent["metadata"]["managedFields"] = [{"manager": "x", "operation": "Update", "apiVersion": "v1",
                                          "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]
    got = ssa.update_entries(None, sent, manager="rs", info=POD, now=NOW.format(4))
    assert got == ssa.track_update(None, sent, manager="rs", info=POD, now=NOW.format(4))["metadata"]["managedFields"]
    assert {e["manager"] for e in got} == {"x", "rs"}        # what a create sends is not the cached case


def test_track_of_creates_keys_by_the_message_and_makes_the_dict_once_per_shape(monkeypatch):
    """FieldManager.track keys a create's entries by the message's bytes without the
    server-owned metadata: the dict (codec.to_dict) is made once per shape, and each pod
    still gets track_update's entries with its own time."""
    from apiserver import fieldmanager
    made = []
    real = fieldmanager.codec.to_dict
    monkeypatch.setattr(fieldmanager.codec, "to_dict", lambda m: made.append(m.metadata.name) or real(m))
    times = iter(NOW.format(i) for i in range(5, 10))
    monkeypatch.setattr(fieldmanager, "now_rfc3339", lambda: next(times))
    ssa._creates.clear()
    fm = FieldManager("replicaset-controller")
    pods = [defaulted(n, app="web") for n in ("web-1", "web-2", "web-3")]
    for i, p in enumerate(pods):                         # server-owned metadata differs pod to pod
        p.metadata.uid, p.metadata.namespace, p.metadata.generation = f"u{i}", f"ns{i}", i
        p.metadata.creation_timestamp.seconds = 1000 + i
    other = defaulted("db-1", app="db")                  # another label value: another shape
    tracked = [fm.track(None, p) for p in pods + [other]]
    assert made == ["web-1", "db-1"]
    for i, (p, now) in enumerate(zip(tracked, (NOW.format(k) for k in range(5, 9)))):
        want = copy.deepcopy(p)
        want.metadata.ClearField("managed_fields")
        expected = ssa.track_update(None, codec.to_dict(want), manager="replicaset-controller", info=POD,
                                    now=now)["metadata"]["managedFields"]
        assert codec.to_dict(p)["metadata"]["managedFields"] == expected, i
    labels = [json_format.MessageToDict(p.metadata.managed_fields[0].fields_v1)["f:metadata"] for p in tracked]
    assert labels[0] == labels[3] == {"f:labels": {".": {}, "f:app": {}}}


EVENT = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-1.17f0", "namespace": "default"},
         "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "uid": "u1",
                            "apiVersion": "v1", "resourceVersion": "41", "fieldPath": "spec.containers{c}"},
         "reason": "Started", "message": "Started container c", "type": "Normal", "count": 1,
         "source": {"component": "kubelet", "host": "node1"}, "firstTimestamp": "2026-12-07T10:00:00Z",
         "lastTimestamp": "2026-12-07T10:00:00Z", "reportingComponent": "kubelet", "reportingInstance": "node1"}


def _with(manifest, **changes):
    out = copy.deepcopy(manifest)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = out
        for p in parents:
            node = node[p]
        node[last] = value
    return out


DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default",
                                                                          "labels": {"app": "web"}},
              "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "c", "image": "echo:1",
                                                             "ports": [{"containerPort": 80}]}]}}}}
PDB = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p", "namespace": "default"},
       "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}

# (a, b, one cache entry for both): b differs from a in scalar values only (one entry), or in
# which fields are set, a map's keys or a list's items (two entries)
SHAPES = [
    (EVENT, _with(EVENT, metadata__name="db-0.18a2", involvedObject__name="db-0", involvedObject__uid="u2",
                  reason="Pulled", message='Container image "x" already present on machine', count=3,
                  firstTimestamp="2026-12-07T11:00:00Z", source__host="node2"), True),
    (EVENT, _with(EVENT, involvedObject={"kind": "Pod", "name": "web-1"}), False),      # fewer fields
    (DEPLOYMENT, _with(DEPLOYMENT, spec__replicas=7, spec__minReadySeconds=5), False),  # a field more
    (DEPLOYMENT, _with(DEPLOYMENT, spec__replicas=7, metadata__name="api"), True),
    (DEPLOYMENT, _with(DEPLOYMENT, metadata__labels={"app": "web", "tier": "x"}), False),   # a map key more
    (DEPLOYMENT, _with(DEPLOYMENT, spec__template__spec__containers=[
        {"name": "d", "image": "echo:1", "ports": [{"containerPort": 80}]}]), False),   # another list key
    (PDB, _with(PDB, spec__minAvailable="50%"), False),          # int or string: another form, its own entry
    (PDB, _with(PDB, spec__minAvailable=5), True),
]


def test_creates_differing_only_in_scalar_values_share_entries_and_each_gets_its_own(monkeypatch):
    """The cache key hollows scalars outside lists and maps: objects that differ only there
    share one entry; a field more or less, a map key or a list item makes another; every
    object gets exactly track_update's entries for its own dict."""
    from apiserver import fieldmanager
    monkeypatch.setattr(fieldmanager, "now_rfc3339", lambda: NOW.format(1))
    fm = FieldManager("kubelet")
    for i, (a, b, shared) in enumerate(SHAPES):
        ssa._creates.clear()
        for manifest in (a, b):
            obj = codec.from_dict(manifest)
            info = kinds.of(obj)
            expected = ssa.track_update(None, codec.to_dict(obj), manager="kubelet", info=info,
                                        now=NOW.format(1))["metadata"]["managedFields"]
            assert codec.to_dict(fm.track(None, obj))["metadata"]["managedFields"] == expected, (i, manifest)
        assert len(ssa._creates) == (1 if shared else 2), i


def test_an_updates_objects_are_made_dicts_with_their_entries_converted_once(monkeypatch):
    """FieldManager.track of an update converts old and new with apiserver/fieldmanager's
    _as_dict: the same dict as codec.to_dict, each managedFields entry made JSON once (a
    write's entries are the next write's old ones); a subresource's write leaves new's out,
    which ssa does not read there.  The entries it writes are those of the plain conversion."""
    from apiserver import fieldmanager as fmod
    old = FieldManager("kubectl").track(None, defaulted("a"))
    old = FieldManager("kubelet", "status").track(old, _with_phase(old, "Running"))
    assert len(old.metadata.managed_fields) == 2
    assert fmod._as_dict(old) == codec.to_dict(old)
    bare = codec.to_dict(old)
    del bare["metadata"]["managedFields"]
    assert fmod._as_dict(old, managed=False) == bare
    plain = defaulted("b")
    assert fmod._as_dict(plain) == codec.to_dict(plain)

    converted = []
    real = codec.to_dict

    def counting(msg):
        converted.append(type(msg).__name__)
        return real(msg)
    monkeypatch.setattr(fmod, "_entries_json", {})
    monkeypatch.setattr(fmod.codec, "to_dict", counting)
    fmod._as_dict(old)
    fmod._as_dict(old)
    assert converted.count("ManagedFieldsEntry") == 2          # two entries, each converted once
    monkeypatch.setattr(fmod.codec, "to_dict", real)

    new = _with_phase(old, "Running")
    new.status.pod_ip = "10.244.1.7"
    tracked = FieldManager("kubelet", "status").track(old, codec.copy(new))
    expected = ssa.update_entries(codec.to_dict(old), codec.to_dict(new), manager="kubelet",
                                  info=POD, now="x", subresource="status")
    assert [(e.manager, e.subresource, json_format.MessageToDict(e.fields_v1))
            for e in tracked.metadata.managed_fields] == \
        [(e["manager"], e.get("subresource", ""), e["fieldsV1"]) for e in expected]


def _with_phase(pod, phase):
    p = codec.copy(pod)
    p.status.phase = phase
    return p


def test_the_fields_an_update_does_not_compare_are_not_converted(monkeypatch):
    """A status write's spec and an update's status are reset fields (ssa.ignored_tops): left
    out of the dicts FieldManager.track makes, with the same entries as the whole objects give."""
    from apiserver import fieldmanager as fmod
    old = FieldManager("kubectl").track(None, defaulted("a"))
    old = FieldManager("kubelet", "status").track(old, _with_phase(old, "Pending"))
    status_write = _with_phase(old, "Running")
    status_write.status.pod_ip = "10.244.1.7"
    status_write.spec.containers[0].image = "ignored:2"         # a status write's spec is not its
    update = codec.copy(old)
    update.metadata.labels["tier"] = "web"
    update.status.phase = "Failed"                              # an update's status is not its
    converted = []
    real = codec.to_dict

    def recording(msg):
        out = real(msg)
        if not isinstance(msg, type(old.metadata.managed_fields[0])):
            converted.append(set(out))
        return out
    for manager, subresource, new, ignored in (("kubelet", "status", status_write, "spec"),
                                               ("kubectl", "", update, "status")):
        expected = ssa.update_entries(codec.to_dict(old), codec.to_dict(new), manager=manager, info=POD,
                                      now="x", subresource=subresource)
        converted.clear()
        monkeypatch.setattr(fmod.codec, "to_dict", recording)
        tracked = FieldManager(manager, subresource).track(old, codec.copy(new))
        monkeypatch.setattr(fmod.codec, "to_dict", real)
        assert len(converted) == 2 and all(ignored not in keys and "metadata" in keys for keys in converted)
        assert [(e.manager, e.subresource, json_format.MessageToDict(e.fields_v1))
                for e in tracked.metadata.managed_fields] == \
            [(e["manager"], e.get("subresource", ""), e["fieldsV1"]) for e in expected]
    assert fmod._fields_named(type(old), ("spec", "status", "nope")) == ("spec", "status")


def test_shared_field_set_forms_are_the_plain_ones_and_remembered():
    """fieldpath's shared forms: to_fields_v1_shared gives to_fields_v1's tree, one object per
    equal set; from_fields_v1_shared gives from_fields_v1's set, a new one each call (callers
    change their sets), remembered by the tree's identity."""
    from machinery.patch import fieldpath
    paths = fieldpath.from_fields_v1({"f:status": {"f:phase": {}, "f:conditions": {
        'k:{"type":"Ready"}': {".": {}, "f:status": {}}}}})
    tree = fieldpath.to_fields_v1_shared(paths)
    assert tree == fieldpath.to_fields_v1(paths)
    assert fieldpath.to_fields_v1_shared(set(paths)) is tree
    first = fieldpath.from_fields_v1_shared(tree)
    assert first == paths
    first.add((("f", "spec"),))                                  # a caller's change stays its own
    assert fieldpath.from_fields_v1_shared(tree) == paths
    assert fieldpath.from_fields_v1_shared(copy.deepcopy(tree)) == paths


def test_update_entries_read_each_entry_and_render_each_field_set_once(monkeypatch):
    """Status write after status write, the unchanged entries are neither decoded nor rendered
    again, and the entries are still track_update's."""
    from machinery.patch import fieldpath
    fieldpath._sets.clear()
    fieldpath._trees.clear()
    decoded, rendered = [], []
    real_from, real_to = fieldpath.from_fields_v1, fieldpath.to_fields_v1
    monkeypatch.setattr(fieldpath, "from_fields_v1", lambda t: decoded.append(1) or real_from(t))
    monkeypatch.setattr(fieldpath, "to_fields_v1", lambda p: rendered.append(1) or real_to(p))
    old = codec.to_dict(FieldManager("kubectl").track(None, defaulted("a")))
    for i in range(4):
        new = copy.deepcopy(old)
        new.setdefault("status", {})["phase"] = "Running" if i % 2 else "Pending"
        got = ssa.update_entries(old, new, manager="kubelet", info=POD, now=NOW.format(i), subresource="status")
        want = ssa.track_update(old, new, manager="kubelet", info=POD, now=NOW.format(i),
                                subresource="status")["metadata"]["managedFields"]
        assert got == want
    assert (len(decoded), len(rendered)) == (1, 2)   # old's one entry; its set and the status write's
