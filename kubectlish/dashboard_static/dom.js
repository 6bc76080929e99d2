// h("div", {class: "x", onclick: fn, dataset: {pod: "a"}}, child, "text", [more]) -> Element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// A horizontal bar: used / total, with the numbers as text.
export function bar(label, used, total, fmt) {
  const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0;
  return h("div", { class: "bar", title: `${label}: ${fmt(used)} requested of ${fmt(total)} allocatable` },
    h("span", { class: "bar-label" }, label),
    h("span", { class: "bar-track" }, h("span", { class: "bar-fill" + (pct > 90 ? " hot" : ""), style: { width: `${pct}%` } })),
    h("span", { class: "bar-text" }, `${fmt(used)} / ${fmt(total)}`));
}

export function replace(id, ...children) {
  const el = document.getElementById(id);
  el.replaceChildren();
  append(el, children);
}
