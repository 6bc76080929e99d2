// The pod panel: spec summary, conditions, the scheduler's decision record
// (annotation scheduler.kctl.io/decision, as `kctl describe pod` shows it),
// the pod's events and the tail of its log (GET pods/NAME/log, when served).
import { h } from "./dom.js";
import { age, eventTime, podState } from "./model.js";

const DECISION = "scheduler.kctl.io/decision";
const LOG_LINES = 40;

function kv(rows) {
  return h("dl", { class: "kv" }, rows.filter(([, v]) => v !== undefined && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function containers(pod) {
  const statuses = Object.fromEntries(((pod.status && pod.status.containerStatuses) || []).map((c) => [c.name, c]));
  return h("table", { class: "grid" },
    h("tr", {}, ["container", "image", "requests", "limits", "state", "restarts"].map((t) => h("th", {}, t))),
    (pod.spec.containers || []).map((c) => {
      const s = statuses[c.name] || {};
      const state = s.state ? Object.keys(s.state)[0] : "";
      const fmt = (r) => Object.entries(r || {}).map(([k, v]) => `${k} ${v}`).join(", ");
      return h("tr", {}, h("td", {}, c.name), h("td", {}, c.image), h("td", {}, fmt(c.resources && c.resources.requests)),
        h("td", {}, fmt(c.resources && c.resources.limits)), h("td", {}, state + (s.ready ? " (ready)" : "")), h("td", {}, s.restartCount || 0));
    }));
}

function decision(pod) {
  const raw = (pod.metadata.annotations || {})[DECISION];
  if (!raw) return h("p", { class: "none" }, "no decision record (not scheduled by kctl's scheduler yet)");
  let d;
  try { d = JSON.parse(raw); } catch { return h("p", { class: "none" }, `unreadable decision record: ${raw.slice(0, 60)}`); }
  const parts = [kv([["node", d.node || "none (unschedulable)"], ["when", d.time],
    ["nodes", `${d.nodes ?? "?"} considered, ${d.feasible ?? "?"} feasible, ${d.scored ?? "?"} scored`]])];
  if ((d.filtered || []).length) {
    parts.push(h("table", { class: "grid" }, h("tr", {}, h("th", {}, "filtered by"), h("th", {}, "nodes"), h("th", {}, "examples")),
      d.filtered.map((f) => h("tr", {}, h("td", {}, f.reason), h("td", {}, f.count), h("td", {}, (f.nodes || []).join(", "))))));
  }
  const scores = d.scores || [];
  if (scores.length) {
    const plugins = [...new Set(scores.flatMap((s) => Object.keys(s.plugins || {})))].sort();
    const num = (v) => (v === undefined || v === null ? "-" : +Number(v).toFixed(1));
    parts.push(h("div", { class: "scroll" }, h("table", { class: "grid scores" },
      h("tr", {}, h("th", {}, "node"), h("th", {}, "total"), plugins.map((p) => h("th", {}, p))),
      scores.map((s) => h("tr", { class: s.node === d.node ? "chosen" : "" }, h("td", {}, s.node), h("td", {}, num(s.total)),
        plugins.map((p) => h("td", {}, num((s.plugins || {})[p]))))))));
  }
  if (d.preemption) parts.push(kv([["preemption", d.preemption.message], ["victims", (d.preemption.victims || []).join(", ")]]));
  return parts;
}

async function logTail(pod, box) {
  const { namespace, name } = pod.metadata;
  const container = encodeURIComponent(pod.spec.containers[0].name);
  const url = `/api/v1/namespaces/${namespace}/pods/${name}/log?container=${container}&tailLines=${LOG_LINES}`;
  try {
    const resp = await fetch(url, { headers: { Accept: "text/plain" } });
    const text = await resp.text();
    if (!resp.ok) {
      let why = `HTTP ${resp.status}`;
      try { why += `: ${JSON.parse(text).message}`; } catch { /* not a Status */ }
      box.replaceChildren(h("p", { class: "none" }, `log not available (${why})`));
      return;
    }
    box.replaceChildren(h("pre", { class: "log" }, text || "(empty log)"));
  } catch (err) {
    box.replaceChildren(h("p", { class: "none" }, `log not available (${err.message})`));
  }
}

export function podEvents(pod, events) {
  return events.filter((e) => e.involvedObject && e.involvedObject.uid === pod.metadata.uid)
    .sort((a, b) => eventTime(b).localeCompare(eventTime(a)));
}

// Builds the panel for `pod` with its events (podEvents); the log of its first container.
export function renderPod(pod, mine, onClose) {
  const s = podState(pod);
  const st = pod.status || {};
  const logBox = h("div", { class: "logbox" }, h("p", { class: "none" }, "loading log…"));
  logTail(pod, logBox);
  return h("div", { class: "panel-inner", dataset: { panelPod: `${pod.metadata.namespace}/${pod.metadata.name}` } },
    h("header", {}, h("h2", {}, pod.metadata.name), h("span", { class: `badge pod-${s.cls}` }, s.label),
      h("button", { class: "close", onclick: onClose, title: "close" }, "×")),
    kv([["namespace", pod.metadata.namespace], ["node", pod.spec.nodeName || "(not scheduled)"], ["pod IP", st.podIP],
        ["phase", st.phase], ["QoS", st.qosClass], ["priority", pod.spec.priority], ["restarts", s.restarts],
        ["age", age(pod.metadata.creationTimestamp)],
        ["owner", (pod.metadata.ownerReferences || []).map((r) => `${r.kind}/${r.name}`).join(", ")]]),
    h("h3", {}, "Containers"), containers(pod),
    h("h3", {}, "Conditions"),
    h("table", { class: "grid" }, (st.conditions || []).map((c) => h("tr", {}, h("td", {}, c.type),
      h("td", { class: c.status === "True" ? "okc" : "badc" }, c.status), h("td", {}, c.reason || ""), h("td", { class: "muted" }, c.message || "")))),
    h("h3", {}, "Scheduling decision"), decision(pod),
    h("h3", {}, "Events"),
    mine.length ? h("table", { class: "grid" }, mine.map((e) => h("tr", { class: e.type === "Warning" ? "warning" : "" },
      h("td", { class: "muted" }, age(eventTime(e))), h("td", {}, e.reason), h("td", {}, e.message)))) : h("p", { class: "none" }, "no events"),
    h("h3", {}, `Log of ${pod.spec.containers[0].name} (last ${LOG_LINES} lines)`), logBox);
}
