"""`kctl rollout status statefulset/NAME` (kubectl's StatefulSetStatusViewer).
History and undo of a StatefulSet are the DaemonSet's (rollout_daemonset.py):
both keep their pod templates in ControllerRevisions they own."""
from __future__ import annotations

from kubectlish.common import Failed


def statefulset_status(sts) -> tuple[str, bool]:
    """(message, done): ready replicas first, then the partitioned or full rolling update."""
    spec, st = sts.spec, sts.status
    if spec.update_strategy.type != "RollingUpdate":
        raise Failed("error: rollout status is only available for RollingUpdate strategy type")
    if st.observed_generation == 0 or sts.metadata.generation > st.observed_generation:
        return "Waiting for statefulset spec update to be observed...", False
    want = spec.replicas if spec.HasField("replicas") else 1
    if st.ready_replicas < want:
        return f"Waiting for {want - st.ready_replicas} pods to be ready...", False
    ru = spec.update_strategy.rolling_update
    if spec.update_strategy.HasField("rolling_update"):
        if ru.HasField("partition") and st.updated_replicas < want - ru.partition:
            return (f"Waiting for partitioned roll out to finish: {st.updated_replicas} out of "
                    f"{want - ru.partition} new pods have been updated..."), False
        return f"partitioned roll out complete: {st.updated_replicas} new pods have been updated...", True
    if st.update_revision != st.current_revision:
        return (f"waiting for statefulset rolling update to complete {st.updated_replicas} pods at revision "
                f"{st.update_revision}..."), False
    return (f"statefulset rolling update complete {st.current_replicas} pods at revision "
            f"{st.current_revision}..."), True
