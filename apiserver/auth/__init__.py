"""Who is asking, and may they: the apiserver's identity, authentication
and authorization, shared by both transports.

* user.py        UserInfo and the request's identity in a context variable:
                 each transport authenticates a request once and sets it;
                 everything below (Verbs, admission, audit) reads
                 `auth.current()`. In-process callers that never passed a
                 transport (bootstrap, the apiserver's own controllers) act
                 as `system:apiserver` (group system:masters), as
                 Kubernetes' loopback client does.
* authn.py       Authenticators: a request's credentials -> UserInfo, or
                 401 Unauthorized. The apiserver's is `Union`: the TLS
                 client certificate (`X509`: CN the user, O the groups),
                 then bearer tokens (`TokenAuthenticator`s). `Insecure`
                 (everyone `system:unsecured` in system:masters) is the
                 pre-TLS behaviour, left for unit tests.
* authz.py       Attributes (user, verb, resource, namespace, name, ...),
                 Authorizers (AlwaysAllow, Chain) and Kubernetes' 403
                 message (`pods is forbidden: User "jane" cannot list ...`).
* requestinfo.py an HTTP request -> Attributes (Kubernetes' RequestInfo):
                 the verb from method + path + ?watch, resource/subresource,
                 namespace, name, or a non-resource path.
* gate.py        the hook points: the gRPC interceptor and the HTTP
                 middlewares that authenticate, impersonate, authorize
                 and audit (apiserver/audit.py).
* impersonation.py  Impersonate-* headers / metadata, each item checked
                 with the `impersonate` verb.
* setup.py       the authorizer chain the apiserver runs:
                 Chain(system:masters, Node, RBAC), on
* index.py       in-memory copies of roles, bindings, pods and claims fed
                 by the watch cache (no etcd read per request);
* rbac.py        Kubernetes' RBAC evaluation; escalation.py: nobody grants
                 rights they lack (apiserver/admission_rbac.py);
* node.py        the Node authorizer (apiserver/admission_noderestriction.py
                 is its admission half);
* bootstrappolicy.py, policy.py  the default roles and bindings, created
                 and reconciled at start, and ClusterRole aggregation;
* reviews.py     SelfSubjectAccessReview, SubjectAccessReview,
                 SelfSubjectRulesReview, SelfSubjectReview;
* tokenfile.py   static bearer tokens (--token-auth-file).

Order of a request (Kubernetes' filter chain): authenticate -> (impersonate)
-> in-flight limit -> authorize -> handler (admission happens in the Store,
apiserver/admission.py).
"""
from apiserver.auth.user import (AUTHENTICATED, LOOPBACK, SYSTEM_MASTERS, UNAUTHENTICATED, UNSECURED,
                                 UserInfo, acting_as, current)

__all__ = ["AUTHENTICATED", "LOOPBACK", "SYSTEM_MASTERS", "UNAUTHENTICATED", "UNSECURED", "UserInfo",
           "acting_as", "current"]
