"""The names test modules import for real processes; they live in the
`harness` package (shared with benchmarks and the lab) — see its docstring."""
from harness.control_plane import ApiServer, ControlPlane, ControllerManager, Etcd, Scheduler  # noqa: F401
from harness.objects import new_object  # noqa: F401
from harness.process import REPO, Process, free_port  # noqa: F401

Cluster = ControlPlane  # the name the test modules use
