"""Pod Security Admission: the Pod Security Standards (privileged, baseline,
restricted) enforced, audited and warned about per namespace by labels, as
Kubernetes' built-in PodSecurity admission plugin does.

    policy.py     namespace labels -> Policy (levels and versions; kctl's default
                  enforces baseline)
    checks.py     the checks of each level, Kubernetes' reasons and messages
    admission.py  the admission plugin (pods, pod templates, namespaces)
"""
from apiserver.podsecurity.admission import PodSecurity
from apiserver.podsecurity import policy
from apiserver.podsecurity.policy import DEFAULT, LevelVersion, Policy, policy_for

__all__ = ["DEFAULT", "LevelVersion", "Policy", "PodSecurity", "policy_for"]
