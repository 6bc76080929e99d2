"""Tables and AGE exactly as kubectl prints them.

Column sets and cell logic live in machinery.tables, shared with the
apiserver's server-side printing (kubectl's tables); this module cuts rows
from them (priority-1 columns only with -o wide) and aligns them. Alignment uses a port of Go's
text/tabwriter (`tabwrite`), which kubectl uses with minwidth 6 and padding 3
for tables and minwidth 0 and padding 2 for describe: a column's width is
taken over each run of consecutive lines that have a cell in that column,
which is what makes describe's nested blocks line up the way kubectl's do.
"""
from __future__ import annotations

from machinery import kinds, tables
from machinery.tables import (  # noqa: F401 (re-exported for kctl's commands)
    NONE, age, event_sort_key, external_ip, format_endpoints, format_labels, format_selector,
    event_times, human_duration, node_roles, node_status, now, pod_status, port_string, ts_seconds)


# ----------------------------------------------------------------- tabwriter

def tabwrite(lines: list[str], minwidth: int = 6, padding: int = 3) -> str:
    """Align tab-separated cells like Go's tabwriter (flags 0, pad ' ').

    Every cell followed by a tab is "terminated" and padded; the last cell of
    a line is printed as is. Column j's width is computed over each block of
    consecutive lines that all have a terminated cell j."""
    rows = [ln.split("\t") for ln in lines]
    widths: list[list[int]] = [[0] * max(len(r) - 1, 0) for r in rows]

    def block(col: int, start: int, end: int) -> None:
        i = start
        while i < end:
            if len(rows[i]) - 1 <= col:
                i += 1
                continue
            j = i
            while j < end and len(rows[j]) - 1 > col:
                j += 1
            w = max(len(rows[k][col]) for k in range(i, j)) + padding
            w = max(w, minwidth)
            for k in range(i, j):
                widths[k][col] = w
            block(col + 1, i, j)
            i = j

    block(0, 0, len(rows))
    out = []
    for r, ws in zip(rows, widths):
        cells = [c.ljust(w) for c, w in zip(r[:-1], ws)] + [r[-1]]
        out.append("".join(cells))
    return "\n".join(out) + ("\n" if out else "")


def headers(kind: str, *, wide=False, all_namespaces=False, show_labels=False) -> list[str]:
    p = tables.PRINTERS[kind]
    cols = [p.columns[i].name for i in p.visible(wide)]
    if all_namespaces and kinds.BY_KIND[kind].namespaced:
        cols = ["NAMESPACE"] + cols
    if show_labels:
        cols.append("LABELS")
    return cols


def row(obj, *, wide=False, all_namespaces=False, show_labels=False, show_kind=False,
        at: float | None = None) -> list[str]:
    info = kinds.of(obj)
    p = tables.PRINTERS[info.kind]
    every = p.cells(obj, at)
    cells = [every[i] for i in p.visible(wide)]
    if show_kind and info.kind != "Event":
        cells[0] = f"{info.qualified_singular}/{cells[0]}"
    if all_namespaces and info.namespaced:
        cells = [obj.metadata.namespace] + cells
    if show_labels:
        cells.append(format_labels(obj.metadata.labels))
    return cells


def table(kind: str, objs, *, wide=False, all_namespaces=False, show_labels=False, show_kind=False,
          no_headers=False, at: float | None = None) -> str:
    lines = []
    if not no_headers:
        lines.append("\t".join(headers(kind, wide=wide, all_namespaces=all_namespaces,
                                       show_labels=show_labels)))
    for o in objs:
        lines.append("\t".join(row(o, wide=wide, all_namespaces=all_namespaces, show_labels=show_labels,
                                   show_kind=show_kind, at=at)))
    return tabwrite(lines)


# ------------------------------------------------------------ -o yaml/json

def manifest(obj) -> dict:
    from machinery import codec
    return codec.to_dict(obj)


def render(objs: list, fmt: str, *, single: bool) -> str:
    """-o yaml|json|name for one object (single) or a kind: List."""
    from machinery import codec
    if fmt == "name":
        return "".join(f"{kinds.of(o).qualified_singular}/{o.metadata.name}\n" for o in objs)
    if single and len(objs) == 1:
        data = manifest(objs[0])
    else:
        data = {"apiVersion": "v1", "items": [manifest(o) for o in objs], "kind": "List",
                "metadata": {"resourceVersion": ""}}
    if fmt == "json":
        return codec.to_json(data) + "\n"
    return codec.to_yaml(data)
