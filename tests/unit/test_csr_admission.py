"""The CertificateApproval and CertificateSigning admission plugins
(apiserver/admission_csr.py) against the RBAC authorizer with kctl's
default policy: approving needs `approve` and issuing needs `sign` on
`signers/<signerName>` (or `<domain>/*`), the controller manager has
Kubernetes' certificate-controller grants, system:masters passes, and
refusals carry Kubernetes' message."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from apiserver import admission
from apiserver.auth import authz, joinpolicy
from apiserver.auth import bootstrappolicy as bp
from machinery import csr as csrs, errors, kinds
from tests.unit.test_csr import new_csr
from tests.unit.test_rbac import _as, _binding, _rbac

INFO = kinds.BY_KIND["CertificateSigningRequest"]
CM = _as("system:kube-controller-manager")
ADMIN = _as("admin", "system:masters")
JANE = _as("jane")
NODE = _as("system:node:n1", "system:nodes")
EXAMPLE = "example.com/serving"


def authorization(*extra):
    rbac = _rbac(*bp.cluster_roles(), *bp.cluster_role_bindings(), *joinpolicy.cluster_roles(),
                 *joinpolicy.cluster_role_bindings(), *extra)
    return SimpleNamespace(authorizer=authz.Chain(authz.Superuser(), rbac))


def grant(user, verb, *names):
    role = bp.cluster_role(f"{user}-{verb}", bp.rule((verb,), ("certificates.k8s.io",), ("signers",), names=names))
    return role, _binding("ClusterRoleBinding", role.metadata.name, "ClusterRole", role.metadata.name, ("User", user))


def request(user, sub, signer=csrs.KUBE_APISERVER_CLIENT_KUBELET, approve=False, certificate=b"", store=None):
    old = new_csr(name="req", signer=signer)
    new = kinds.new("CertificateSigningRequest")
    new.CopyFrom(old)
    if approve:
        csrs.set_condition(new, csrs.APPROVED, "ok", "fine")
    new.status.certificate = certificate
    store = store or SimpleNamespace(authorization=authorization())
    return admission.Request(admission.UPDATE, INFO, new, old, sub, store, user=user)


def run(req):
    return asyncio.run(admission.validate(req))


@pytest.mark.parametrize("user, signer, ok", [
    (CM, csrs.KUBE_APISERVER_CLIENT_KUBELET, True),          # the node client auto-approver
    (CM, csrs.KUBE_APISERVER_CLIENT, False),                  # Kubernetes gives it approve on the kubelet signer only
    (ADMIN, EXAMPLE, True),                                   # system:masters (superuser and cluster-admin)
    (JANE, csrs.KUBE_APISERVER_CLIENT_KUBELET, False),
    (NODE, csrs.KUBE_APISERVER_CLIENT_KUBELET, False),
])
def test_approval_needs_approve_on_the_signer(user, signer, ok):
    req = request(user, "approval", signer, approve=True)
    if ok:
        assert run(req) == []
    else:
        with pytest.raises(errors.Forbidden) as exc:
            run(req)
        assert exc.value.message == ('certificatesigningrequests.certificates.k8s.io "req" is forbidden: '
                                     f'user not permitted to approve requests with signerName "{signer}"')


@pytest.mark.parametrize("signer, ok", [
    (csrs.KUBE_APISERVER_CLIENT, True), (csrs.KUBE_APISERVER_CLIENT_KUBELET, True),
    (csrs.KUBELET_SERVING, True), (csrs.LEGACY_UNKNOWN, True), (EXAMPLE, False),
])
def test_the_controller_manager_signs_for_the_kubernetes_io_signers(signer, ok):
    req = request(CM, "status", signer, certificate=b"pem")
    if ok:
        assert run(req) == []
    else:
        with pytest.raises(errors.Forbidden, match=f'user not permitted to sign requests with signerName "{EXAMPLE}"'):
            run(req)


def test_a_named_grant_or_the_domain_wildcard_allows():
    store = SimpleNamespace(authorization=authorization(*grant("jane", "approve", EXAMPLE),
                                                        *grant("joe", "sign", "example.com/*")))
    assert run(request(JANE, "approval", EXAMPLE, approve=True, store=store)) == []
    assert run(request(_as("joe"), "status", "example.com/other", certificate=b"pem", store=store)) == []
    with pytest.raises(errors.Forbidden):                     # approve on one name is not sign, nor another name
        run(request(JANE, "status", EXAMPLE, certificate=b"pem", store=store))
    with pytest.raises(errors.Forbidden):
        run(request(JANE, "approval", "example.com/other", approve=True, store=store))
    with pytest.raises(errors.Forbidden):                     # example.com/* is not example.org
        run(request(_as("joe"), "status", "example.org/x", certificate=b"pem", store=store))


def test_status_writes_that_touch_neither_certificate_nor_conditions_pass():
    req = request(JANE, "status")
    assert run(req) == []
    req = request(JANE, "status", approve=True)               # a condition (validation refuses Approved here)
    with pytest.raises(errors.Forbidden, match="not permitted to sign"):
        run(req)


def test_the_old_signer_name_is_checked():
    req = request(CM, "approval", csrs.KUBE_APISERVER_CLIENT_KUBELET, approve=True)
    req.obj.spec.signer_name = EXAMPLE                        # what the stored request says counts
    assert run(req) == []
    req = request(JANE, "approval", EXAMPLE, approve=True,
                  store=SimpleNamespace(authorization=authorization(*grant("jane", "approve", EXAMPLE))))
    req.old.spec.signer_name = csrs.KUBE_APISERVER_CLIENT
    with pytest.raises(errors.Forbidden, match=csrs.KUBE_APISERVER_CLIENT):
        run(req)


def test_without_an_authorizer_or_for_other_writes_nothing_is_asked():
    assert run(request(JANE, "approval", approve=True, store=SimpleNamespace())) == []
    req = request(JANE, "", approve=True)                      # the object itself: no approval
    assert run(req) == []
    req = request(JANE, "approval", approve=True)
    req.operation = admission.CREATE
    assert run(req) == []


def test_the_plugins_are_registered_and_can_be_named():
    names = [p.name for p in admission.VALIDATING]
    assert names.index("CertificateApproval") < names.index("CertificateSigning") < \
        names.index("CertificateSubjectRestriction")
