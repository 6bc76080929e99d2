"""Label and field selectors behave like apimachinery's labels/fields packages."""
import pytest

from machinery import selectors
from machinery.pb import apps_pb2, core_pb2, meta_pb2

LABELS = {"app": "web", "tier": "fe", "version": "3"}


@pytest.mark.parametrize("text, expected", [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=db", False),
    ("app!=db", True),
    ("app!=web", False),
    ("missing!=x", True),              # != matches absent labels
    ("tier in (fe,be)", True),
    ("tier in (be)", False),
    ("tier notin (be)", True),
    ("tier notin (fe, be)", False),
    ("missing notin (x)", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier=fe", True),
    ("app=web, tier=be", False),
    ("version>2", True),
    ("version<3", False),
    ("missing>1", False),
    ("app=", False),
    ("empty=", None),
])
def test_label_selector_matching(text, expected):
    sel = selectors.parse_label_selector(text)
    if expected is None:   # `k=` selects an empty value
        assert sel.matches({"empty": ""}) and not sel.matches({"empty": "x"})
    else:
        assert sel.matches(LABELS) is expected


@pytest.mark.parametrize("text, fragment", [
    ("app=web,", "end of input"),
    ("app in web", "expected: '('"),
    ("app in (a", "expected: ')'"),
    ("app in ()", "values set can't be empty"),
    ("=web", "expected: !, identifier"),
    ("app web", "expected: in, notin"),
    ("-bad=x", "invalid label key"),
    ("app=-x", "invalid label value"),
    ("a/b/c=x", "invalid label key"),
    ("version>x", "exactly one integer value"),
    ("app=a b", "expected: ','"),
])
def test_label_selector_errors(text, fragment):
    with pytest.raises(ValueError) as exc:
        selectors.parse_label_selector(text)
    assert fragment in str(exc.value)


def test_label_selector_string_and_empty():
    sel = selectors.parse_label_selector("tier in (z,a),app=web,!canary")
    assert str(sel) == "app=web,!canary,tier in (a,z)"  # sorted by key
    assert not sel.empty
    assert selectors.parse_label_selector("").empty
    assert selectors.parse_label_selector(str(sel)) == sel
    assert [r.key for r in selectors.requirements(sel)] == ["app", "canary", "tier"]


def test_from_proto_nil_matches_nothing_empty_matches_everything():
    assert not selectors.from_proto(None).matches(LABELS)
    assert not selectors.from_proto(None).matches({})
    assert selectors.from_proto(meta_pb2.LabelSelector()).matches(LABELS)
    rs = apps_pb2.ReplicaSet()
    assert not selectors.from_field(rs.spec, "selector").matches(LABELS)
    rs.spec.selector.SetInParent()
    assert selectors.from_field(rs.spec, "selector").matches(LABELS)


def test_from_proto_expressions():
    sel = meta_pb2.LabelSelector(match_labels={"app": "web"}, match_expressions=[
        meta_pb2.LabelSelectorRequirement(key="tier", operator="In", values=["fe", "be"]),
        meta_pb2.LabelSelectorRequirement(key="canary", operator="DoesNotExist"),
        meta_pb2.LabelSelectorRequirement(key="version", operator="Exists"),
        meta_pb2.LabelSelectorRequirement(key="env", operator="NotIn", values=["prod"]),
    ])
    s = selectors.from_proto(sel)
    assert s.matches(LABELS)
    assert not s.matches({**LABELS, "canary": "1"})
    assert not s.matches({**LABELS, "env": "prod"})
    assert not s.matches({"app": "web", "tier": "fe"})
    assert selectors.proto_to_string(sel) == "app=web,!canary,env notin (prod),tier in (be,fe),version"
    assert selectors.proto_to_string(meta_pb2.LabelSelector()) == "<none>"


@pytest.mark.parametrize("expr, fragment", [
    (dict(key="a", operator="Foo"), '"Foo" is not a valid label selector operator'),
    (dict(key="a", operator="In"), "values set can't be empty"),
    (dict(key="a", operator="Exists", values=["x"]), "values set must be empty"),
])
def test_from_proto_errors(expr, fragment):
    sel = meta_pb2.LabelSelector(match_expressions=[meta_pb2.LabelSelectorRequirement(**expr)])
    with pytest.raises(ValueError) as exc:
        selectors.from_proto(sel)
    assert fragment in str(exc.value)


def test_from_map_like_service_selector():
    assert selectors.from_map({"app": "web"}).matches(LABELS)
    assert not selectors.from_map({"app": "db"}).matches(LABELS)


def _pod():
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = "web-1", "default"
    pod.spec.node_name, pod.spec.scheduler_name = "n1", "default-scheduler"
    pod.status.phase, pod.status.pod_ip = "Running", "10.0.0.5"
    return pod


@pytest.mark.parametrize("text, expected", [
    ("", True),
    ("metadata.name=web-1", True),
    ("metadata.name==web-1", True),
    ("metadata.name!=web-1", False),
    ("metadata.namespace=default,spec.nodeName=n1", True),
    ("spec.nodeName=", False),
    ("spec.nodeName!=", True),
    ("status.phase=Running,spec.nodeName=n2", False),
    ("spec.schedulerName=default-scheduler", True),
    ("status.podIP=10.0.0.5", True),
    ("spec.hostNetwork=false", True),
])
def test_field_selector_on_pod(text, expected):
    assert selectors.parse_field_selector(text, "Pod").matches(_pod()) is expected


def test_field_selector_escapes_and_exact():
    sel = selectors.parse_field_selector(r"metadata.name=a\,b,spec.nodeName==n1")
    assert [(r.field, r.operator, r.value) for r in sel.requirements] == [
        ("metadata.name", "=", "a,b"), ("spec.nodeName", "==", "n1")]
    assert sel.exact("spec.nodeName") == "n1"
    assert sel.exact("status.phase") is None
    assert str(sel) == r"metadata.name=a\,b,spec.nodeName==n1"


@pytest.mark.parametrize("text", ["metadata.name", "a>b", "=x", "a=b,,c=d"])
def test_field_selector_parse_errors(text):
    with pytest.raises(ValueError) as exc:
        selectors.parse_field_selector(text)
    assert "invalid selector" in str(exc.value)


def test_unsupported_field_label():
    with pytest.raises(ValueError) as exc:
        selectors.parse_field_selector("spec.foo=x", "Pod")
    assert str(exc.value) == "field label not supported: spec.foo"
    with pytest.raises(ValueError):
        selectors.field_value(core_pb2.Service(), "spec.nodeName")
    with pytest.raises(ValueError):
        selectors.parse_field_selector("metadata.namespace=x", "Node")
    with pytest.raises(ValueError):
        selectors.field_value(core_pb2.Node(), "metadata.namespace")
    assert "metadata.namespace" not in selectors.supported_fields("Node")


def test_field_values_per_kind():
    node = core_pb2.Node()
    node.metadata.name = "n1"
    node.spec.unschedulable = True
    assert selectors.field_value(node, "spec.unschedulable") == "true"
    ev = core_pb2.Event(reason="Scheduled", type="Normal")
    ev.involved_object.kind, ev.involved_object.name = "Pod", "web-1"
    ev.involved_object.namespace, ev.involved_object.uid = "default", "u1"
    for path, want in [("involvedObject.kind", "Pod"), ("involvedObject.name", "web-1"),
                       ("involvedObject.namespace", "default"), ("involvedObject.uid", "u1"),
                       ("reason", "Scheduled"), ("type", "Normal")]:
        assert selectors.field_value(ev, path) == want
    svc = core_pb2.Service()
    svc.spec.type = "NodePort"
    assert selectors.parse_field_selector("spec.type=NodePort", "Service").matches(svc)
    ns = core_pb2.Namespace()
    ns.metadata.name = "dev"
    assert selectors.field_value(ns, "metadata.name") == "dev"


def _topology(*terms):
    from machinery.pb import storage_pb2
    sc = storage_pb2.StorageClass()
    for term in terms:
        t = sc.allowed_topologies.add()
        for key, values in term.items():
            t.match_label_expressions.add(key=key, values=values)
    return sc.allowed_topologies


@pytest.mark.parametrize("terms, labels, want", [
    ((), {}, True),                                                          # no terms: every node
    (({"zone": ["a", "b"]},), {"zone": "b"}, True),                          # values ORed
    (({"zone": ["a"]},), {"zone": "b"}, False),
    (({"zone": ["a"]},), {}, False),                                         # label missing
    (({"zone": ["a"], "rack": ["r1"]},), {"zone": "a", "rack": "r2"}, False),  # expressions ANDed
    (({"zone": ["a"]}, {"rack": ["r2"]}), {"zone": "c", "rack": "r2"}, True),  # terms ORed
    (({},), {"zone": "a"}, False),                                           # an empty term admits none
])
def test_matches_topology(terms, labels, want):
    assert selectors.matches_topology(_topology(*terms), labels) is want
