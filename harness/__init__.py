"""One cluster harness for tests, benchmarks and the lab: real kctl processes,
started and stopped by PID.

- `harness.process`: `Process` (a child in its own session, logging to a
  file, SIGTERM then SIGKILL by PID), `free_port`, `REPO`.
- `harness.etcd`: `Etcd` (one member) and `EtcdCluster` (N members: kill,
  pause, start one, who leads), with a few raw reads/writes through etcd's
  JSON gateway; `etcd_argv` / `etcd_cluster_argv`, the etcd command line the
  lab uses too.
- `harness.control_plane`: `ApiServer`, `Scheduler`, `ControllerManager` and
  `ControlPlane` — etcd + apiserver on loopback (or on a given address),
  optionally the scheduler and the controller manager, in a temporary
  directory (it re-exports harness.etcd's names).
- `harness.pki`: one cluster CA per harness process (`session()`): every
  apiserver the harness starts serves TLS with a certificate of it, the
  admin kubeconfig `session().admin` works against all of them, components
  and nodes get kubeconfigs with their own identities.
- `harness.netns`: a root-namespace bridge on a free 169.254.x.0/24
  (`Segment`) that node network namespaces hang off, and the host clean-up
  helpers (containers by PID, mounts, cgroups, netns by prefix).
- `harness.nodes`: `Node` (a `kctl-nodeagent` inside its own node netns on a
  segment) and `NodeCluster` (segment + control plane on the segment address
  + a local image registry + nodes), what the node agent integration tests,
  `kctl logs/exec` tests and `bench/pod_start.py` run on.
- `harness.pods`: waiting for nodes and pods through the API, `make_pod`.
- `harness.objects`: `new_object`, a minimal valid object of every kind.

Everything works without pytest (benchmarks are plain scripts): the objects
are context managers; pytest fixtures in `tests/**/conftest.py` only wrap
them. Why a top-level package and not `tests/` or `deploy/`: benchmarks must
not import test modules, and the lab (`deploy/lab/cluster.py`) takes its etcd
command line (`etcd_argv`) and its image list (`harness.nodes.IMAGES`) from
here, so the harness is importable on its own and listed in pyproject's
packages; `deploy/` is what an installation needs to run a cluster, the
harness is what runs one *for a check*. The harness uses `deploy.images` and
`deploy.registry`; `deploy/` uses only those two names of the harness.
"""
