"""Creating a controller's pods the way Kubernetes' controllers do
(RealPodControl + slowStartBatch): batches of 1, 2, 4, ... under creation
expectations, stopping after a batch with a failure (the failed and the
never-tried creates lower the expectations at once), with Kubernetes'
events per pod ("SuccessfulCreate" "Created pod: NAME", "FailedCreate"
"Error creating: ..."). Used by the Job and DaemonSet controllers.
"""
from __future__ import annotations

from controllers.replicaset import SLOW_START_INITIAL_BATCH, _BatchFailed, slow_start


async def create_pods(ctrl, key: str, owner, pods) -> int:
    """Create `pods` for `owner` (ctrl has client, expectations, event); returns how many were made."""
    if not pods:
        return 0
    ctrl.expectations.expect_creations(key, len(pods))
    todo = list(pods)

    async def one():
        try:
            made = await ctrl.client.create(todo.pop(0))
        except Exception:
            ctrl.expectations.creation_observed(key)
            raise
        ctrl.event(owner, "Normal", "SuccessfulCreate", f"Created pod: {made.metadata.name}")
    try:
        return await slow_start(len(pods), SLOW_START_INITIAL_BATCH, one)
    except _BatchFailed as exc:
        ctrl.expectations.creation_observed(key, len(pods) - exc.done - exc.failed)
        ctrl.event(owner, "Warning", "FailedCreate", f"Error creating: {exc.first}")
        raise exc.first from exc
