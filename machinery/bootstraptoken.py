"""Bootstrap token Secrets (k8s.io/cluster-bootstrap/token/api), shared by the
apiserver's authenticator and the controller manager's token cleaner: the
Secret `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`,
and when one has expired (`expiration`, RFC 3339)."""
from __future__ import annotations

import datetime

SECRET_TYPE = "bootstrap.kubernetes.io/token"
NAMESPACE = "kube-system"
SECRET_PREFIX = "bootstrap-token-"


def text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def expiration(secret) -> float | None:
    """The Secret's expiry as unix seconds (None: it never expires; -inf: unreadable, i.e. expired)."""
    raw = text(secret.data.get("expiration", b""))
    if not raw:
        return None
    try:
        when = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return float("-inf")
    return when.timestamp() if when.tzinfo is not None else float("-inf")


def expired(secret, now: float) -> bool:
    when = expiration(secret)
    return when is not None and when <= now
