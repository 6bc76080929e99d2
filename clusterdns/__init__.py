"""kctl-dns: cluster DNS, so that pods find services by name.

Where it runs (decided in issue 10): a control-plane component, `kctl-dns`,
in the place CoreDNS has in Kubernetes — clients reach it through the
`kube-system/kube-dns` Service (ClusterIP 10.96.0.10 when the service CIDR
allows it). Like every component but the apiserver it is a client of the
API: it lists and watches Namespaces, Services, Endpoints and Pods through
kctl's informers (machinery/informer.py, as controllers/ use them) and
answers every query from its in-memory view, never asking the apiserver per
query. Why not node-local DNS inside each node agent: one server keeps one
watch per kind on the apiserver instead of one per node, can be restarted,
measured and scaled on its own, and is the picture Kubernetes users learn
(a caching node-local layer can be added later in front of it).

The pieces:
* index.py    — ClusterIndex: the name index, updated on each event;
* feed.py     — informer handlers turning API objects into index entries;
* resolver.py — the answers, as CoreDNS's kubernetes plugin gives them;
* server.py   — UDP + TCP on asyncio, truncation, answer cache;
* forward.py  — upstreams, only when the operator configures them;
* metrics.py  — /metrics: queries by type and rcode, latency histogram;
* register.py — the kube-dns Service, and its Endpoints = the live instances (a Lease each);
* main.py     — flags and run().
"""
