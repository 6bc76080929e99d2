// Pure functions over API objects: quantities, node and pod states, requests
// per node, the ReplicaSets of a Deployment. No DOM here.

const SUFFIX = {
  n: 1e-9, u: 1e-6, m: 1e-3, "": 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

// "100m" -> 0.1, "128Mi" -> 134217728, "1e3" -> 1000; unreadable -> 0.
export function quantity(q) {
  if (q === undefined || q === null) return 0;
  const m = /^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$/.exec(String(q).trim());
  if (!m || !(m[2] in SUFFIX)) return 0;
  return parseFloat(m[1]) * SUFFIX[m[2]];
}

export function condition(obj, type) {
  return ((obj.status && obj.status.conditions) || []).find((c) => c.type === type);
}

// {ready: "True"|"False"|"Unknown", label: "Ready"|"NotReady", why, cordoned, taints: ["key=value:Effect"]}
export function nodeState(node) {
  const ready = condition(node, "Ready");
  const spec = node.spec || {};
  const taints = (spec.taints || [])
    .filter((t) => t.key !== "node.kubernetes.io/unschedulable")
    .map((t) => `${t.key}${t.value ? "=" + t.value : ""}:${t.effect}`);
  const status = ready ? ready.status : "Unknown";
  // kubectl's STATUS column: anything but Ready=True is NotReady.
  const why = ready ? `Ready=${ready.status}${ready.reason ? " (" + ready.reason + ")" : ""}${ready.message ? ": " + ready.message : ""}`
    : "no Ready condition";
  return { ready: status, label: status === "True" ? "Ready" : "NotReady", why, cordoned: !!spec.unschedulable, taints };
}

// The pod's class for colouring, and a short label (kubectl's STATUS column, roughly).
export function podState(pod) {
  const st = pod.status || {};
  const statuses = st.containerStatuses || [];
  const restarts = statuses.reduce((n, c) => n + (c.restartCount || 0), 0);
  const waiting = statuses.map((c) => c.state && c.state.waiting && c.state.waiting.reason).find(Boolean);
  const ready = condition(pod, "Ready");
  let cls, label;
  if (pod.metadata.deletionTimestamp) [cls, label] = ["terminating", "Terminating"];
  else if (st.phase === "Running") {
    const isReady = ready && ready.status === "True";
    [cls, label] = isReady ? ["ready", "Running"] : ["notready", waiting || "Running, not ready"];
  } else if (st.phase === "Succeeded") [cls, label] = ["succeeded", "Completed"];
  else if (st.phase === "Failed") [cls, label] = ["failed", st.reason || "Failed"];
  else if (st.phase === "Pending") [cls, label] = ["pending", waiting || (pod.spec.nodeName ? "Pending" : "Unscheduled")];
  else [cls, label] = ["unknown", st.phase || "Unknown"];
  return { cls, label, restarts };
}

// Sum of container requests of the pods that hold resources on a node.
export function requested(pods) {
  let cpu = 0, memory = 0;
  for (const p of pods) {
    const phase = p.status && p.status.phase;
    if (phase === "Succeeded" || phase === "Failed") continue;
    for (const c of p.spec.containers || []) {
      const r = (c.resources && c.resources.requests) || {};
      cpu += quantity(r.cpu);
      memory += quantity(r.memory);
    }
  }
  return { cpu, memory };
}

export function ownedBy(obj, owner) {
  return (obj.metadata.ownerReferences || []).some((r) => r.uid === owner.metadata.uid);
}

const REVISION = "deployment.kubernetes.io/revision";

// A Deployment's ReplicaSets: [{rs, isNew, pods}], new first; old ones only while they still have pods.
export function replicaSetsOf(deploy, replicaSets, pods) {
  const rev = (deploy.metadata.annotations || {})[REVISION];
  return replicaSets
    .filter((rs) => ownedBy(rs, deploy))
    .map((rs) => ({ rs, isNew: (rs.metadata.annotations || {})[REVISION] === rev,
                    pods: pods.filter((p) => ownedBy(p, rs)) }))
    .filter((x) => x.isNew || (x.rs.spec.replicas || 0) > 0 || (x.rs.status && x.rs.status.replicas) || x.pods.length)
    .sort((a, b) => (b.isNew - a.isNew) || quantity((b.rs.metadata.annotations || {})[REVISION])
                                        - quantity((a.rs.metadata.annotations || {})[REVISION]));
}

export function fmtCpu(cores) {
  return cores < 1 ? `${Math.round(cores * 1000)}m` : `${+cores.toFixed(2)}`;
}

export function fmtBytes(b) {
  const units = [["Gi", 2 ** 30], ["Mi", 2 ** 20], ["Ki", 2 ** 10]];
  for (const [u, n] of units) if (b >= n) return `${+(b / n).toFixed(1)}${u}`;
  return `${b}`;
}

export function age(ts, now = Date.now()) {
  if (!ts) return "";
  const s = Math.max(0, Math.round((now - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

// Events newest first, by the latest of their timestamps.
export function eventTime(e) {
  return e.lastTimestamp || e.eventTime || e.firstTimestamp || e.metadata.creationTimestamp || "";
}
