// The sections of the page, rendered from the watched collections.
// Each render* takes the current state and returns DOM; app.js places it.
import { bar, h } from "./dom.js";
import { age, eventTime, fmtBytes, fmtCpu, nodeState, podState, quantity, replicaSetsOf, requested } from "./model.js";

export function podChip(pod, onPod) {
  const s = podState(pod);
  const name = pod.metadata.name;
  return h("button", {
    class: `pod ${s.cls}`, title: `${pod.metadata.namespace}/${name}: ${s.label}, ${s.restarts} restart(s)`,
    dataset: { pod: `${pod.metadata.namespace}/${name}`, state: s.cls }, onclick: () => onPod(pod),
  }, h("span", { class: "pod-name" }, name), s.restarts ? h("span", { class: "restarts" }, `↻${s.restarts}`) : null);
}

export function renderNodes(st) {
  const nodes = st.nodes.list().sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const boxes = nodes.map((node) => {
    const name = node.metadata.name;
    const ns = nodeState(node);
    const onNode = st.allPods.filter((p) => p.spec.nodeName === name);
    const req = requested(onNode);
    const alloc = (node.status && node.status.allocatable) || {};
    const shown = onNode.filter(st.inNamespace);
    const badges = [h("span", { class: `badge ${ns.ready === "True" ? "ok" : "bad"}`, title: ns.why }, ns.label)];
    if (ns.cordoned) badges.push(h("span", { class: "badge warn" }, "cordoned"));
    for (const t of ns.taints) badges.push(h("span", { class: "badge taint", title: t }, t));
    return h("section", { class: `node ${ns.ready === "True" ? "" : "down"}`, dataset: { node: name, ready: ns.ready } },
      h("header", {}, h("h3", {}, name), ...badges),
      bar("CPU", req.cpu, quantity(alloc.cpu), fmtCpu),
      bar("Mem", req.memory, quantity(alloc.memory), fmtBytes),
      h("div", { class: "pods" }, shown.length ? shown.map((p) => podChip(p, st.onPod)) : h("span", { class: "none" }, "no pods")),
      st.labControls ? st.labControls(name) : null);
  });
  const pending = st.allPods.filter((p) => !p.spec.nodeName && st.inNamespace(p));
  if (pending.length) {
    boxes.push(h("section", { class: "node unscheduled", dataset: { node: "" } },
      h("header", {}, h("h3", {}, "not scheduled")),
      h("div", { class: "pods" }, pending.map((p) => podChip(p, st.onPod)))));
  }
  return boxes.length ? boxes : h("p", { class: "none" }, "no nodes");
}

function counts(pairs) {
  return h("div", { class: "counts" }, pairs.map(([k, v]) => h("span", {}, h("b", {}, v ?? 0), ` ${k}`)));
}

function rsColumn(x, st) {
  const rs = x.rs;
  const s = rs.status || {};
  return h("div", { class: `rs ${x.isNew ? "new" : "old"}`, dataset: { rs: rs.metadata.name, new: String(x.isNew) } },
    h("div", { class: "rs-title" }, h("span", { class: "tag" }, x.isNew ? "new" : "old"), ` ${rs.metadata.name}`),
    counts([["desired", rs.spec.replicas], ["ready", s.readyReplicas]]),
    h("div", { class: "pods" }, x.pods.map((p) => podChip(p, st.onPod))));
}

export function renderWorkloads(st) {
  const out = [];
  for (const d of st.deployments.list().filter(st.inNamespace)) {
    const s = d.status || {};
    const sets = replicaSetsOf(d, st.replicasets.list(), st.allPods);
    const rolling = sets.length > 1;
    out.push(h("section", { class: "workload", dataset: { deployment: d.metadata.name, rolling: String(rolling) } },
      h("header", {}, h("h3", {}, h("span", { class: "kind" }, "Deployment"), ` ${d.metadata.name}`),
        rolling ? h("span", { class: "badge warn" }, "rollout in progress") : null),
      counts([["desired", d.spec.replicas], ["updated", s.updatedReplicas], ["ready", s.readyReplicas],
              ["available", s.availableReplicas]]),
      h("div", { class: "rsets" }, sets.map((x) => rsColumn(x, st)))));
  }
  const other = [
    ["StatefulSet", st.statefulsets, (s, o) => [["desired", o.spec.replicas], ["ready", s.readyReplicas], ["updated", s.updatedReplicas]]],
    ["DaemonSet", st.daemonsets, (s) => [["desired", s.desiredNumberScheduled], ["updated", s.updatedNumberScheduled],
                                         ["ready", s.numberReady], ["available", s.numberAvailable]]],
    ["Job", st.jobs, (s, o) => [["completions", o.spec.completions], ["succeeded", s.succeeded], ["active", s.active], ["failed", s.failed]]],
  ];
  for (const [kind, coll, fields] of other) {
    for (const o of coll.list().filter(st.inNamespace)) {
      const pods = st.allPods.filter((p) => (p.metadata.ownerReferences || []).some((r) => r.uid === o.metadata.uid));
      out.push(h("section", { class: "workload", dataset: { [kind.toLowerCase()]: o.metadata.name } },
        h("header", {}, h("h3", {}, h("span", { class: "kind" }, kind), ` ${o.metadata.name}`)),
        counts(fields(o.status || {}, o)),
        h("div", { class: "pods" }, pods.map((p) => podChip(p, st.onPod)))));
    }
  }
  return out.length ? out : h("p", { class: "none" }, "no workloads in this namespace");
}

export function renderServices(st) {
  const slices = st.endpointslices.list();
  const out = st.services.list().filter(st.inNamespace).map((svc) => {
    const name = svc.metadata.name;
    const mine = slices.filter((s) => s.metadata.namespace === svc.metadata.namespace
      && (s.metadata.labels || {})["kubernetes.io/service-name"] === name);
    const eps = mine.flatMap((s) => s.endpoints || []);
    const ports = (svc.spec.ports || []).map((p) => `${p.port}${p.nodePort ? ":" + p.nodePort : ""}/${p.protocol || "TCP"}`);
    return h("section", { class: "service", dataset: { service: name } },
      h("header", {}, h("h3", {}, name), h("span", { class: "muted" }, `${svc.spec.type || "ClusterIP"} ${svc.spec.clusterIP || ""} ${ports.join(" ")}`)),
      h("div", { class: "endpoints" }, eps.length ? eps.map((e) => {
        const ok = !e.conditions || e.conditions.ready !== false;
        const who = e.targetRef ? e.targetRef.name : "";
        return h("span", { class: `ep ${ok ? "ready" : "notready"}`, title: `${who} on ${e.nodeName || "?"}: ${ok ? "ready" : "not ready"}` },
          (e.addresses || []).join(","), who ? h("small", {}, ` ${who}`) : null);
      }) : h("span", { class: "none" }, svc.spec.selector ? "no endpoints" : "no selector")));
  });
  return out.length ? out : h("p", { class: "none" }, "no services in this namespace");
}

// Events newest first; filter by namespace (st.inNamespace) and a text on the involved object.
export function renderEvents(st, filter) {
  const f = (filter || "").toLowerCase();
  const rows = st.events.list().filter(st.inNamespace).filter((e) => {
    const o = e.involvedObject || {};
    return !f || `${o.kind}/${o.name}`.toLowerCase().includes(f);
  }).sort((a, b) => eventTime(b).localeCompare(eventTime(a))).slice(0, 200);
  if (!rows.length) return h("p", { class: "none" }, "no events");
  return h("div", { class: "events" }, rows.map((e) => {
    const o = e.involvedObject || {};
    return h("div", { class: `ev${e.type === "Warning" ? " warning" : ""}` },
      h("div", { class: "ev-head" }, h("span", { class: "muted age" }, age(eventTime(e))), h("b", {}, e.reason),
        h("span", { class: "obj" }, `${(o.kind || "").toLowerCase()}/${o.name}`),
        e.count > 1 ? h("span", { class: "muted" }, `×${e.count}`) : null),
      h("div", { class: "msg" }, e.message));
  }));
}
