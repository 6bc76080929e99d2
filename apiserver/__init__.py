"""kctl-apiserver: the kctl.v1.Api gRPC service on etcd.

Modules, outside in:

- main.py        flags, `run()` (bootstrap, watch caches, gRPC server in one TaskGroup)
- server.py      the gRPC servicer; the one place errors become gRPC statuses; metrics
- crud.py        create/get/list/update/delete/bind as etcd txns (optimistic concurrency)
- crudbind.py    bind / bind_batch of pods (a mixin of crud.py's Store); crudbase.py their shared helpers
- registry.py    one strategy per kind (server-set fields, status rules, grace periods)
- allocators.py  ClusterIP / NodePort allocation, in the Service's own txn
- watchcache.py  one etcd watch per kind, a ring buffer fanned out to all watchers
- objects.py     etcd keys, stored bytes, selectors
- storage.py     etcd (the only module importing aetcd); errors translated there
- encryption.py  encryption at rest (EncryptionConfiguration; Secrets by default)
- metrics.py     Prometheus series on --metrics-listen

etcd layout: `/registry/<plural>/<namespace>/<name>` (cluster-scoped kinds:
`/registry/<plural>/<name>`), the value is the object's protobuf encoding
(apiVersion/kind set, resourceVersion empty: it is the key's mod_revision),
encrypted for Secrets (`k8s:enc:aesgcm:v1:<key>:` + nonce + ciphertext,
encryption.py).
Allocations: `/registry/allocations/clusterips/<ip>` and
`/registry/allocations/nodeports/<port>`, valued with the owning service's key.

Choices where Kubernetes leaves room or kctl simplifies:

- Update without resourceVersion is unconditional (Kubernetes'
  AllowUnconditionalUpdate for built-in kinds); with one, a stale
  resourceVersion is a Conflict. An update that changes nothing is not
  written (resourceVersion unchanged), so a dry-run update equal to the
  stored object means "unchanged".
- Deleting a Namespace marks it Terminating (deletionTimestamp,
  status.phase=Terminating, `kubernetes` in spec.finalizers) and keeps it;
  the namespace controller deletes its contents and then updates
  spec.finalizers to empty, which removes it. New objects in a terminating
  namespace are Forbidden.
- Pods bound to a node are deleted gracefully (request's grace, else
  spec.terminationGracePeriodSeconds, else 30 s); unbound or finished pods,
  and grace 0, go at once. Finalizers hold any object (deletionTimestamp set,
  deletionGracePeriodSeconds 0) until an update empties them.
- `default`, `kube-system`, `kube-public` and `kube-node-lease` are created
  at startup; the first three may not be deleted (Forbidden). kube-system
  carries `pod-security.kubernetes.io/enforce: privileged`; every other
  namespace without that label is enforced at `baseline`
  (apiserver/podsecurity/, --pod-security-default-enforce).
- An update whose metadata.uid names an earlier incarnation of the object is
  Invalid (metadata.uid is immutable); omitted uid/creationTimestamp are
  carried over.
- Pod watchers with `spec.nodeName=<node>` are indexed in the watch cache
  (woken only by their node's pods), as Kubernetes does for kubelets.
- A watcher more than --watch-cache-size events behind is closed with gRPC
  RESOURCE_EXHAUSTED (reason TooManyRequests); it should watch again from
  the last resourceVersion it saw (no relist needed unless that is Expired).
- LoadBalancer services get a NodePort and a warning; no load balancer. The
  first ClusterIP of the range is reserved, but no `kubernetes` Service is
  created (the apiserver speaks gRPC on loopback, not HTTPS to pods).
- /metrics listens on 127.0.0.1:9464 by default (`--metrics-listen off`
  disables it; a port in use is logged and skipped).
"""
