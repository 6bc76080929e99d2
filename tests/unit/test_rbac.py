"""RBAC: Kubernetes' rule evaluation (plugin/pkg/auth/authorizer/rbac
rbac_test.go cases), subjects and bindings, the default policy and its
aggregation, validation of the kinds."""
import asyncio

import pytest

from apiserver.auth import UserInfo, authz
from apiserver.auth import bootstrappolicy as bp
from apiserver.auth import escalation
from apiserver.auth.authz import Attributes
from apiserver.auth.policy import _merge, aggregated_rules
from apiserver.auth.rbac import RBAC, rule_allows
from machinery import codec, defaults, validation

JANE = UserInfo("jane", groups=("system:authenticated",))
rule = bp.rule


def res(verb, group, resource, sub="", name="", ns="ns"):
    return Attributes(JANE, verb, namespace=ns, api_group=group, resource=resource, subresource=sub, name=name)


def url(verb, path):
    return Attributes(JANE, verb, resource_request=False, path=path)


@pytest.mark.parametrize("r,a,allowed", [
    # star verb / group / resource
    (rule(["*"], ["group1"], ["resource1"]), res("get", "group1", "resource1"), True),
    (rule(["*"], ["group1"], ["resource1"]), res("get", "group2", "resource1"), False),
    (rule(["*"], ["group1"], ["resource1"]), res("get", "group1", "resource2"), False),
    (rule(["get"], ["*"], ["resource1"]), res("get", "group2", "resource1"), True),
    (rule(["get"], ["*"], ["resource1"]), res("list", "group2", "resource1"), False),
    (rule(["get"], ["group1"], ["*"]), res("get", "group1", "anything"), True),
    (rule(["get"], ["group1"], ["*"]), res("get", "group1", "pods", "log"), True),     # * covers subresources
    # exact tuples, subresources
    (rule(["get"], [""], ["pods"]), res("get", "", "pods", "log"), False),
    (rule(["get"], [""], ["pods/log"]), res("get", "", "pods", "log"), True),
    (rule(["get"], [""], ["pods/log"]), res("get", "", "pods"), False),
    (rule(["get"], ["apps"], ["*/scale"]), res("get", "apps", "deployments", "scale"), True),
    (rule(["get"], ["apps"], ["*/scale"]), res("get", "apps", "deployments"), False),
    (rule(["get"], ["apps"], ["*/scale"]), res("get", "apps", "deployments", "status"), False),
    (rule(["get"], ["apps"], ["*/scale"]), res("get", "apps", "deployments", "xscale"), False),
    # resource names
    (rule(["get"], [""], ["pods"], names=["web"]), res("get", "", "pods", name="web"), True),
    (rule(["get"], [""], ["pods"], names=["web"]), res("get", "", "pods", name="db"), False),
    (rule(["list"], [""], ["pods"], names=["web"]), res("list", "", "pods"), False),
    (rule(["get"], [""], ["pods"]), res("get", "", "pods", name="anything"), True),
    # non-resource URLs
    (rule(["get"], urls=["/foo"]), url("get", "/foo"), True),
    (rule(["get"], urls=["/foo"]), url("get", "/foo/bar"), False),
    (rule(["get"], urls=["/foo/*"]), url("get", "/foo/bar"), True),
    (rule(["get"], urls=["/foo/*"]), url("get", "/foo/"), True),
    (rule(["get"], urls=["/foo/*"]), url("get", "/foo"), False),
    (rule(["get"], urls=["/foo*"]), url("get", "/foobar"), True),
    (rule(["get"], urls=["*"]), url("get", "/anything"), True),
    (rule(["get"], urls=["/foo"]), url("post", "/foo"), False),
    (rule(["*"], urls=["/foo"]), url("post", "/foo"), True),
    # a resource rule never matches a URL and the other way round
    (rule(["get"], ["*"], ["*"]), url("get", "/foo"), False),
    (rule(["get"], urls=["*"]), res("get", "", "pods"), False),
])
def test_rule_allows(r, a, allowed):
    assert rule_allows(a, r) is allowed


def _binding(kind, name, role_kind, role, *subjects, ns=""):
    cls = bp.rbac_pb2.RoleBinding if kind == "RoleBinding" else bp.rbac_pb2.ClusterRoleBinding
    return bp.binding(cls, name, role, *subjects, namespace=ns, role_kind=role_kind)


def _rbac(*objs):
    z = RBAC()
    index = {"Role": z.roles, "ClusterRole": z.cluster_roles, "RoleBinding": z.role_bindings,
             "ClusterRoleBinding": z.cluster_role_bindings}
    for o in objs:
        index[type(o).__name__].put(o)
    return z


def allowed(z, a) -> bool:
    return asyncio.run(z.authorize(a)).allowed


READER = bp.cluster_role("pod-reader", rule(["get", "list"], [""], ["pods"]))


def test_rolebinding_to_clusterrole_is_scoped_to_its_namespace():
    z = _rbac(READER, _binding("RoleBinding", "rb", "ClusterRole", "pod-reader", ("User", "jane"), ns="team"))
    assert allowed(z, res("list", "", "pods", ns="team"))
    assert not allowed(z, res("list", "", "pods", ns="other"))
    assert not allowed(z, res("list", "", "pods", ns=""))           # all namespaces: cluster scope


def test_clusterrolebinding_grants_everywhere_and_role_binds_roles():
    role = bp._meta(bp.rbac_pb2.Role(rules=[rule(["create"], [""], ["configmaps"])]), "cm", "team")
    z = _rbac(READER, role, _binding("ClusterRoleBinding", "crb", "ClusterRole", "pod-reader", ("Group", "devs")),
              _binding("RoleBinding", "rb", "Role", "cm", ("User", "jane"), ns="team"))
    dev = UserInfo("bob", groups=("devs",))
    assert allowed(z, Attributes(dev, "list", namespace="x", resource="pods"))
    assert allowed(z, Attributes(dev, "list", resource="pods"))
    assert not allowed(z, res("list", "", "pods"))
    assert allowed(z, res("create", "", "configmaps", ns="team"))
    assert not allowed(z, res("create", "", "configmaps", ns="other"))


def test_service_account_subjects_and_groups():
    z = _rbac(READER,
              _binding("RoleBinding", "a", "ClusterRole", "pod-reader", ("ServiceAccount", "robot"), ns="team"),
              _binding("RoleBinding", "b", "ClusterRole", "pod-reader", ("Group", "system:serviceaccounts:ci"),
                       ns="shared"))
    robot = UserInfo("system:serviceaccount:team:robot", groups=("system:serviceaccounts",
                                                                  "system:serviceaccounts:team"))
    ci = UserInfo("system:serviceaccount:ci:builder", groups=("system:serviceaccounts", "system:serviceaccounts:ci"))
    assert allowed(z, Attributes(robot, "get", namespace="team", resource="pods"))
    assert not allowed(z, Attributes(ci, "get", namespace="team", resource="pods"))
    assert allowed(z, Attributes(ci, "get", namespace="shared", resource="pods"))
    assert not allowed(z, Attributes(UserInfo("robot"), "get", namespace="team", resource="pods"))


def test_binding_to_missing_role_grants_nothing():
    z = _rbac(_binding("ClusterRoleBinding", "crb", "ClusterRole", "gone", ("User", "jane")))
    assert not allowed(z, res("get", "", "pods"))
    assert z.rules_for(JANE, "ns").errors == ['clusterrole.rbac.authorization.k8s.io "gone" not found']


def _default_policy():
    roles = bp.cluster_roles()
    by_name = {r.metadata.name: r for r in roles}
    for r in roles:
        if r.aggregation_rule.cluster_role_selectors:
            r.rules.extend(aggregated_rules(r, roles))
    # aggregation reads the other roles' rules as stored: admin includes edit's aggregated rules
    for name in ("view", "edit", "admin"):
        r = by_name[name]
        del r.rules[:]
        r.rules.extend(aggregated_rules(r, roles))
    return _rbac(*roles, *bp.cluster_role_bindings(), *bp.namespaced())


def _as(name, *groups):
    return UserInfo(name, groups=(*groups, "system:authenticated"))


def test_default_policy_view_edit_admin():
    z = _default_policy()
    for role in ("view", "edit", "admin"):
        z.role_bindings.put(bp.binding(bp.rbac_pb2.RoleBinding, role, role, ("User", role), namespace="team"))
    def can(who, verb, resource, group="", sub=""):
        return allowed(z, Attributes(_as(who), verb, namespace="team", api_group=group, resource=resource,
                                     subresource=sub))
    assert can("view", "list", "pods") and can("view", "get", "deployments", "apps")
    assert can("view", "get", "pods", sub="log")
    assert not can("view", "create", "pods") and not can("view", "get", "secrets")
    assert can("edit", "create", "deployments", "apps") and can("edit", "get", "secrets")
    assert can("edit", "patch", "deployments", "apps", "scale")
    assert not can("edit", "create", "rolebindings", "rbac.authorization.k8s.io")
    assert can("admin", "create", "rolebindings", "rbac.authorization.k8s.io")
    assert can("admin", "delete", "pods")


def test_default_policy_system_identities():
    z = _default_policy()
    sched = _as("system:kube-scheduler")
    cm = _as("system:kube-controller-manager")
    assert allowed(z, Attributes(sched, "create", namespace="a", resource="pods", subresource="binding"))
    assert allowed(z, Attributes(sched, "watch", resource="nodes"))
    assert allowed(z, Attributes(sched, "update", namespace="kube-system", api_group="coordination.k8s.io",
                                 resource="leases", name="kube-scheduler"))
    assert not allowed(z, Attributes(sched, "get", namespace="a", resource="secrets"))
    # system:volume-scheduler: VolumeBinding binds claims (selected-node annotation) and pre-bound volumes
    assert allowed(z, Attributes(sched, "update", namespace="a", resource="persistentvolumeclaims", name="data"))
    assert allowed(z, Attributes(sched, "patch", resource="persistentvolumes", name="pv1"))
    assert not allowed(z, Attributes(sched, "delete", namespace="a", resource="persistentvolumeclaims"))
    assert allowed(z, Attributes(cm, "create", namespace="a", api_group="apps", resource="replicasets"))
    assert allowed(z, Attributes(cm, "delete", namespace="a", resource="pods"))
    assert not allowed(z, Attributes(cm, "create", namespace="a", resource="secrets"))
    anyone = _as("someone")
    assert allowed(z, Attributes(anyone, "create", api_group="authorization.k8s.io",
                                 resource="selfsubjectaccessreviews"))
    assert allowed(z, Attributes(anyone, "get", resource_request=False, path="/apis/apps/v1"))
    assert not allowed(z, Attributes(anyone, "list", namespace="default", resource="pods"))
    dns = UserInfo("system:serviceaccount:kube-system:kube-dns", groups=("system:serviceaccounts",))
    assert allowed(z, Attributes(dns, "watch", api_group="discovery.k8s.io", resource="endpointslices"))
    assert allowed(z, Attributes(dns, "create", namespace="kube-system", resource="endpoints"))
    assert allowed(z, Attributes(dns, "update", namespace="kube-system", resource="services", name="kube-dns"))
    assert not allowed(z, Attributes(dns, "update", namespace="kube-system", resource="services", name="other"))
    assert not allowed(z, Attributes(dns, "create", namespace="default", resource="endpoints"))
    for verb in ("create", "get", "list", "update", "delete"):     # its own Lease (clusterdns/register.py)
        assert allowed(z, Attributes(dns, verb, namespace="kube-system", api_group="coordination.k8s.io",
                                     resource="leases", name="" if verb in ("create", "list") else "kctl-dns-10-0-0-1"))
    assert not allowed(z, Attributes(dns, "create", namespace="default", api_group="coordination.k8s.io",
                                     resource="leases"))
    node = _as("system:node:n1", "system:nodes")
    assert allowed(z, Attributes(node, "list", namespace="kube-node-lease", api_group="coordination.k8s.io",
                                 resource="leases"))
    assert allowed(z, Attributes(node, "watch", api_group="discovery.k8s.io", resource="endpointslices"))


def test_aggregation_unions_matching_roles_in_name_order_without_duplicates():
    target = bp.cluster_role("monitoring", aggregate="monitoring")
    a = bp.cluster_role("b-one", rule(["get"], [""], ["pods"]), labels={bp.AGGREGATE_TO + "monitoring": "true"})
    b = bp.cluster_role("a-two", rule(["get"], [""], ["nodes"]), rule(["get"], [""], ["pods"]),
                        labels={bp.AGGREGATE_TO + "monitoring": "true"})
    other = bp.cluster_role("c", rule(["*"], ["*"], ["*"]))
    rules = aggregated_rules(target, [target, a, b, other])
    assert [list(r.resources) for r in rules] == [["nodes"], ["pods"]]


def test_reconcile_adds_missing_defaults_and_keeps_additions():
    default = bp.cluster_role("system:basic-user", rule(["create"], ["x"], ["y"]))
    current = codec.copy(default)
    del current.rules[:]
    current.rules.append(rule(["get"], ["extra"], ["stuff"]))
    del current.metadata.labels["kubernetes.io/bootstrapping"]
    assert _merge(current, default)
    assert len(current.rules) == 2 and current.metadata.labels["kubernetes.io/bootstrapping"] == "rbac-defaults"
    assert not _merge(current, default)
    b = bp.cluster_role_bindings()[0]
    mine = codec.copy(b)
    del mine.subjects[:]
    assert _merge(mine, b) and [s.name for s in mine.subjects] == ["system:masters"]


def test_default_objects_are_valid():
    for obj in [*bp.cluster_roles(), *bp.cluster_role_bindings(), *bp.namespaced()]:
        o = codec.copy(obj)
        defaults.apply_defaults(o)
        assert validation.validate(o) == [], obj.metadata.name


def _errors(doc):
    obj = codec.from_dict(doc)
    defaults.apply_defaults(obj)
    return [str(e) for e in validation.validate(obj)]


RBAC_V1 = "rbac.authorization.k8s.io/v1"


def test_validation_messages():
    assert _errors({"apiVersion": RBAC_V1, "kind": "Role", "metadata": {"name": "r", "namespace": "a"},
                    "rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}]}) == [
        'rules[0].nonResourceURLs: Invalid value: ["/x"]: namespaced rules cannot apply to non-resource URLs']
    assert _errors({"apiVersion": RBAC_V1, "kind": "ClusterRole", "metadata": {"name": "c"},
                    "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods", "nodes"],
                               "resourceNames": ["x"]}]}) == [
        "rules[0].resourceNames: Required value: resource names cannot apply to multiple resources"]
    assert _errors({"apiVersion": RBAC_V1, "kind": "ClusterRoleBinding", "metadata": {"name": "c"},
                    "roleRef": {"kind": "Role", "name": "x"},
                    "subjects": [{"kind": "ServiceAccount", "name": "default"}]}) == [
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
        "subjects[0].namespace: Required value"]
    assert _errors({"apiVersion": RBAC_V1, "kind": "RoleBinding", "metadata": {"name": "..", "namespace": "a"},
                    "roleRef": {"kind": "ClusterRole", "name": "view"},
                    "subjects": [{"kind": "User", "name": "jane", "apiGroup": "wrong"}]}) == [
        "metadata.name: Invalid value: \"..\": may not be '..'",
        'subjects[0].apiGroup: Unsupported value: "wrong": supported values: "rbac.authorization.k8s.io"']


def test_role_ref_is_immutable():
    old = bp.binding(bp.rbac_pb2.RoleBinding, "rb", "view", ("User", "jane"), namespace="a")
    new = codec.copy(old)
    new.role_ref.name = "edit"
    assert [str(e) for e in validation.validate(new, old)] == [
        'roleRef: Invalid value: {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}: '
        "cannot change roleRef"]


def test_chain_superuser_first():
    z = authz.Chain(authz.Superuser(), RBAC())
    root = UserInfo("root", groups=("system:masters",))
    assert asyncio.run(z.authorize(Attributes(root, "delete", resource="nodes"))).allowed
    assert not asyncio.run(z.authorize(Attributes(JANE, "get", resource="nodes"))).allowed


# ------------------------------------------------------------ escalation


@pytest.mark.parametrize("owner,servant,ok", [
    ([rule(["*"], ["*"], ["*"])], [rule(["get", "delete"], ["apps"], ["deployments/scale"])], True),
    ([rule(["get"], [""], ["pods"])], [rule(["get"], [""], ["pods"])], True),
    ([rule(["get"], [""], ["pods"])], [rule(["get", "list"], [""], ["pods"])], False),
    ([rule(["get"], [""], ["*/scale"])], [rule(["get"], [""], ["rc/scale"])], True),
    ([rule(["get"], [""], ["pods"], names=["a"])], [rule(["get"], [""], ["pods"])], False),
    ([rule(["get"], [""], ["pods"])], [rule(["get"], [""], ["pods"], names=["a"])], True),
    ([rule(["get"], urls=["/api/*"])], [rule(["get"], urls=["/api/v1"])], True),
    ([rule(["get"], urls=["/api"])], [rule(["get"], urls=["/api/v1"])], False),
])
def test_covers(owner, servant, ok):
    assert (escalation.uncovered(owner, servant) == []) is ok


def test_escalation_message_is_kubernetes_wording():
    missing = escalation.uncovered([rule(["get"], [""], ["pods"])],
                                   [rule(["get", "create", "delete"], [""], ["pods"]), rule(["get"], urls=["/x"])])
    assert escalation.escalation_message(UserInfo("jane", groups=("devs", "system:authenticated")), missing) == (
        'user "jane" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not '
        'currently held:\n{APIGroups:[""], Resources:["pods"], Verbs:["create" "delete"]}\n'
        '{NonResourceURLs:["/x"], Verbs:["get"]}')


def test_escalation_check_skips_garbage_collector_updates():
    from apiserver.admission_rbac import only_gc_fields
    old = bp.cluster_role("r", rule(["create"], [""], ["secrets"]))
    new = codec.copy(old)
    new.metadata.finalizers.append("foregroundDeletion")
    new.metadata.owner_references.add(api_version="v1", kind="Namespace", name="x", uid="u")
    assert only_gc_fields(new, old)
    new.rules[0].verbs.append("delete")
    assert not only_gc_fields(new, old)


def test_requests_wait_for_the_first_list_after_a_start():
    class FakeKindCache:
        on_reset = on_events = None

    caches = {k: FakeKindCache() for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")}
    z = RBAC().attach(caches)

    async def main():
        pending = asyncio.create_task(z.authorize(res("list", "", "pods")))
        await asyncio.sleep(0)
        assert not pending.done()                       # no roles yet: waiting, not refusing
        caches["ClusterRole"].on_reset([type("KV", (), {"value": READER.SerializeToString()})])
        crb = _binding("ClusterRoleBinding", "crb", "ClusterRole", "pod-reader", ("User", "jane"))
        caches["ClusterRoleBinding"].on_reset([type("KV", (), {"value": crb.SerializeToString()})])
        caches["Role"].on_reset([])
        caches["RoleBinding"].on_reset([])
        return await pending
    assert asyncio.run(main()).allowed


def test_component_default_lease_names_are_allowed_by_their_roles():
    """The scheduler's and controller manager's default --lease-name must be one
    their own identity may get and update (a Vagrant run found the scheduler's
    `kctl-scheduler` forbidden: it never became leader and no pod was scheduled)."""
    from controllers.main import parse_args as cm_args
    from scheduler.main import parse_args as sched_args
    z = _default_policy()
    for user, args in (("system:kube-scheduler", sched_args(["--leader-elect"])),
                       ("system:kube-controller-manager", cm_args(["--leader-elect"]))):
        for verb in ("get", "update"):
            assert allowed(z, Attributes(_as(user), verb, namespace=args.lease_namespace,
                                         api_group="coordination.k8s.io", resource="leases",
                                         name=args.lease_name)), (user, verb, args.lease_name)
