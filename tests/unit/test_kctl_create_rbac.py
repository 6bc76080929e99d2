"""kctl create role|clusterrole|rolebinding|clusterrolebinding: the objects
kubectl's generators build (printed with --dry-run=client -o json)."""
import json

from click.testing import CliRunner

from kubectlish.main import cli


def create(*args):
    r = CliRunner().invoke(cli, ["--server", "127.0.0.1:1", "create", *args, "--dry-run=client", "-o", "json"])
    return r.exit_code, (json.loads(r.stdout) if r.exit_code == 0 else r.stderr)


def test_role_groups_resources_per_api_group():
    code, obj = create("role", "r", "--verb=get,list", "--resource=pods,pods/log,deployments.apps",
                       "--resource=deploy", "-n", "team")
    assert code == 0 and obj["kind"] == "Role" and obj["metadata"] == {"name": "r", "namespace": "team"}
    assert obj["rules"] == [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]},
                            {"verbs": ["get", "list"], "apiGroups": ["apps"],
                             "resources": ["deployments"]}]


def test_clusterrole_urls_names_and_aggregation():
    code, obj = create("clusterrole", "c", "--verb=get", "--resource=nodes", "--resource-name=n1",
                       "--non-resource-url=/healthz")
    assert obj["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"], "resourceNames": ["n1"]},
                            {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]
    code, obj = create("clusterrole", "agg", "--aggregation-rule=rbac.example.com/aggregate-to-x=true")
    assert obj["aggregationRule"] == {"clusterRoleSelectors": [{"matchLabels": {
        "rbac.example.com/aggregate-to-x": "true"}}]}
    code, err = create("clusterrole", "bad", "--verb=fly", "--resource=pods")
    assert code == 1 and "error: invalid verb: 'fly'" in err


def test_bindings():
    code, obj = create("rolebinding", "rb", "--clusterrole=view", "--user=jane", "--group=devs",
                       "--serviceaccount=ci:builder", "-n", "team")
    assert obj["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
    assert [(s["kind"], s["name"], s.get("namespace")) for s in obj["subjects"]] == [
        ("User", "jane", None), ("Group", "devs", None), ("ServiceAccount", "builder", "ci")]
    code, err = create("rolebinding", "rb", "--user=jane")
    assert code == 1 and "exactly one of clusterrole or role must be specified" in err
    code, obj = create("clusterrolebinding", "crb", "--clusterrole=edit", "--group=devs")
    assert obj["kind"] == "ClusterRoleBinding" and obj["subjects"][0]["kind"] == "Group"
