// The page: one Collection (list + watch) per resource, a render batched per
// animation frame, the selection (namespace, pod, event filter) in the URL's
// query string so a link or a reload shows the same view.
import { Collection } from "./watch.js";
import { h, replace } from "./dom.js";
import { renderEvents, renderNodes, renderServices, renderWorkloads } from "./views.js";
import { podEvents, renderPod } from "./detail.js";

const RESOURCES = {
  nodes: "/api/v1/nodes",
  pods: "/api/v1/pods",
  namespaces: "/api/v1/namespaces",
  services: "/api/v1/services",
  events: "/api/v1/events",
  endpointslices: "/apis/discovery.k8s.io/v1/endpointslices",
  deployments: "/apis/apps/v1/deployments",
  replicasets: "/apis/apps/v1/replicasets",
  statefulsets: "/apis/apps/v1/statefulsets",
  daemonsets: "/apis/apps/v1/daemonsets",
  jobs: "/apis/batch/v1/jobs",
};

const params = new URLSearchParams(location.search);
const sel = {
  namespace: params.get("namespace") || "default",   // "" = all namespaces
  pod: params.get("pod") || "",                      // "namespace/name"
  events: params.get("events") || "",
};
let info = { readOnly: true, lab: null, labActions: [] };
let scheduled = false;
const coll = {};

function saveSelection() {
  const q = new URLSearchParams();
  q.set("namespace", sel.namespace);
  if (sel.pod) q.set("pod", sel.pod);
  if (sel.events) q.set("events", sel.events);
  history.replaceState(null, "", `?${q}`);
}

function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => { scheduled = false; render(); });
}

function state() {
  return {
    ...coll,
    allPods: coll.pods.list(),
    inNamespace: (o) => !sel.namespace || o.metadata.namespace === sel.namespace,
    onPod: (p) => { sel.pod = `${p.metadata.namespace}/${p.metadata.name}`; saveSelection(); panelKey = ""; schedule(); },
    labControls: info.lab ? labControls : null,
  };
}

function labControls(node) {
  return h("div", { class: "lab" }, info.labActions.map((action) => h("button", {
    class: "labbtn", dataset: { action, node }, onclick: (ev) => runLab(ev.target, action, node),
  }, action)));
}

async function runLab(button, action, node) {
  button.disabled = true;
  setStatus(`lab ${info.lab}: ${action} ${node}…`);
  try {
    const resp = await fetch(`/lab/${action}/${node}`, { method: "POST", headers: { "X-Kctl-Dashboard": "1" } });
    const body = await resp.json();
    setStatus(`lab ${info.lab}: ${body.output || body.message || resp.status}`);
  } catch (err) {
    setStatus(`lab ${info.lab}: ${action} ${node} failed: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

function renderNamespaces() {
  const select = document.getElementById("namespace");
  const names = coll.namespaces.list().map((n) => n.metadata.name).sort();
  if (sel.namespace && !names.includes(sel.namespace)) names.push(sel.namespace);
  const want = ["", ...names].join("\n");
  if (select.dataset.options !== want) {
    select.replaceChildren(h("option", { value: "" }, "all namespaces"), ...names.map((n) => h("option", { value: n }, n)));
    select.dataset.options = want;
  }
  select.value = sel.namespace;
}

let panelKey = "";
function renderPanel(st) {
  const panel = document.getElementById("panel");
  const pod = sel.pod ? coll.pods.items.get(sel.pod) : null;
  if (!sel.pod) { panel.hidden = true; panelKey = ""; return; }
  panel.hidden = false;
  // Rebuilt (and its log fetched again) only when the pod or its events change.
  const events = pod ? podEvents(pod, coll.events.list()) : [];
  const key = pod ? [pod.metadata.resourceVersion, ...events.map((e) => e.metadata.resourceVersion)].join("/") : "gone";
  if (key === panelKey) return;
  panelKey = key;
  const close = () => { sel.pod = ""; saveSelection(); schedule(); };
  panel.replaceChildren(pod ? renderPod(pod, events, close)
    : h("div", { class: "panel-inner" }, h("header", {}, h("h2", {}, sel.pod), h("button", { class: "close", onclick: close }, "×")),
      h("p", { class: "none" }, "this pod does not exist (any more)")));
}

function render() {
  const st = state();
  renderNamespaces();
  replace("nodes", renderNodes(st));
  replace("workloads", renderWorkloads(st));
  replace("services", renderServices(st));
  replace("events", renderEvents(st, sel.events));
  renderPanel(st);
  const errors = Object.entries(coll).filter(([, c]) => c.error).map(([k, c]) => `${k}: ${c.error}`);
  const loading = Object.values(coll).some((c) => c.served === null);
  document.getElementById("conn").textContent = errors.length ? `reconnecting (${errors[0]})` : loading ? "loading…" : "live";
  document.getElementById("conn").className = errors.length ? "bad" : loading ? "warn" : "ok";
  document.body.dataset.live = String(!errors.length && !loading);
}

async function main() {
  try {
    info = await (await fetch("/dashboard/info")).json();
  } catch { /* served by another proxy: read-only, no lab */ }
  document.getElementById("mode").textContent = (info.readOnly ? "read-only" : "read-write")
    + (info.lab ? ` · lab controls: ${info.lab}` : "");
  document.getElementById("namespace").addEventListener("change", (ev) => {
    sel.namespace = ev.target.value; saveSelection(); schedule();
  });
  const filter = document.getElementById("event-filter");
  filter.value = sel.events;
  filter.addEventListener("input", (ev) => { sel.events = ev.target.value; saveSelection(); schedule(); });
  for (const [name, path] of Object.entries(RESOURCES)) {
    coll[name] = new Collection(path, schedule);
    coll[name].run();
  }
  saveSelection();
  schedule();
}

main();
