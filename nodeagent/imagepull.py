"""Making a container's image present, with the kubelet's pull back-off and events.

``ImagePuller.ensure`` asks the image store (nodeagent/images.py, or the
hollow ``FakeImageStore``) for the image by the container's
imagePullPolicy (default: Always for ``:latest``, else IfNotPresent) and
records the outcome on the container's record: a failed pull sets the
waiting reason ``ErrImagePull`` (or the store's reason, e.g.
``ErrImageNeverPull``) and a back-off (crash-loop base, doubling, at most
5 min) during which the pod worker shows ``ImagePullBackOff``; a success
resets the back-off.  Events are the kubelet's: Pulling, Pulled (with the
time, or "already present on machine"), Failed.

``pulling`` is true while a pull is in flight, so the worker can abandon a
pull when the pod is deleted meanwhile.
"""
from __future__ import annotations

import time

from machinery.pb import core_pb2
from nodeagent.errors import ContainerConfigError, ImagePullError
from nodeagent.imageref import default_pull_policy
from nodeagent.status import ContainerRecord

MAX_BACKOFF = 300.0      # the kubelet's cap, for image pulls and (nodeagent/syncpod.py) crash loops


class ImagePuller:
    def __init__(self, images, recorder, backoff_base: float) -> None:
        self.images = images
        self.recorder = recorder
        self.backoff_base = backoff_base
        self.pulling = False

    async def ensure(self, pod: core_pb2.Pod, c: core_pb2.Container, rec: ContainerRecord, auth: dict | None = None):
        """The image of container c, or None after a failure (recorded on rec); `auth` is the
        pod's pull credentials (nodeagent/pullsecrets.py)."""
        images = self.images
        try:
            policy = c.image_pull_policy or default_pull_policy(c.image)
            present = policy != "Always" and images.get(c.image) is not None
            if not present:
                self.recorder.event(pod, "Normal", "Pulling", f'Pulling image "{c.image}"')
            t0 = time.monotonic()
            self.pulling = True
            try:
                image = await (images.pull(c.image, policy, auth=auth) if auth else images.pull(c.image, policy))
            finally:
                self.pulling = False
        except ImagePullError as exc:
            rec.pull_failures += 1
            rec.pull_backoff = (self.backoff_base if rec.pull_backoff == 0
                                else min(rec.pull_backoff * 2, MAX_BACKOFF))
            rec.pull_backoff_until = time.time() + rec.pull_backoff
            rec.waiting_reason = "ErrImagePull" if exc.reason in ("ErrImagePull", "") else exc.reason
            rec.waiting_message = exc.message
            self.recorder.event(pod, "Warning", "Failed", f'Failed to pull image "{c.image}": {exc.message}')
            self.recorder.event(pod, "Warning", "Failed", f"Error: {rec.waiting_reason}")
            return None
        except ContainerConfigError as exc:       # an unknown imagePullPolicy
            rec.waiting_reason, rec.waiting_message = "InvalidImageName", str(exc)
            rec.pull_backoff_until = time.time() + 30
            return None
        rec.pull_backoff = 0
        rec.pull_failures = 0
        if present:
            self.recorder.event(pod, "Normal", "Pulled", f'Container image "{c.image}" already present on machine')
        else:
            self.recorder.event(pod, "Normal", "Pulled", f'Successfully pulled image "{c.image}" '
                                f"in {time.monotonic() - t0:.3f}s")
        return image
