"""The subset of kubectl's `-o jsonpath=TEMPLATE` that scripts use.

A template is literal text with `{...}` expressions. An expression is a
path from the object (`{.spec.replicas}`, `{.metadata.labels.app}`,
`{.spec.containers[0].image}`, `{.items[*].metadata.name}`, `{..image}` is
not supported), `{"\\n"}`-style string literals, or `{range EXPR}...{end}`
to repeat the inner template for each element. Several matches of one
expression are joined by a space, maps and lists print as JSON, as kubectl
does. Keys containing dots are written `['kubernetes.io/hostname']`.
"""
from __future__ import annotations

import json
import re

from machinery.errors import DecodeError

_TOKEN = re.compile(r"\{([^{}]*)\}")
_SEG = re.compile(r"\.([A-Za-z0-9_\-/]+)|\['([^']*)'\]|\[(\*|-?\d+)\]")


class JSONPathError(DecodeError):
    """A template that cannot be parsed (a DecodeError, so also a ValueError)."""


def _walk(values: list, path: str) -> list:
    path = path.strip()
    if path in ("", "."):
        return values
    if path.startswith("$"):
        path = path[1:]
    pos = 0
    for m in _SEG.finditer(path):
        if m.start() != pos:
            raise JSONPathError(f"unrecognized identifier in {path!r} at {path[pos:]!r}")
        pos = m.end()
        key = m.group(1) if m.group(1) is not None else m.group(2)
        out = []
        for v in values:
            if key is not None:
                if isinstance(v, dict) and key in v:
                    out.append(v[key])
            elif m.group(3) == "*":
                if isinstance(v, list):
                    out.extend(v)
                elif isinstance(v, dict):
                    out.extend(v.values())
            else:
                i = int(m.group(3))
                if isinstance(v, list) and -len(v) <= i < len(v):
                    out.append(v[i])
        values = out
    if pos != len(path):
        raise JSONPathError(f"unrecognized identifier in {path!r} at {path[pos:]!r}")
    return values


def _show(v) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _parse(template: str) -> list:
    """Tokens: ("text", s) | ("expr", path) | ("range", path, body)."""
    tokens: list = []
    stack = [tokens]
    pos = 0
    for m in _TOKEN.finditer(template):
        if m.start() > pos:
            stack[-1].append(("text", template[pos:m.start()]))
        pos = m.end()
        body = m.group(1).strip()
        if body.startswith("range "):
            node = ("range", body[6:].strip(), [])
            stack[-1].append(node)
            stack.append(node[2])
        elif body == "end":
            if len(stack) == 1:
                raise JSONPathError("{end} without {range}")
            stack.pop()
        elif len(body) >= 2 and body[0] == body[-1] and body[0] in "\"'":
            stack[-1].append(("text", body[1:-1].encode().decode("unicode_escape")))
        else:
            stack[-1].append(("expr", body))
    if pos < len(template):
        stack[-1].append(("text", template[pos:]))
    if len(stack) != 1:
        raise JSONPathError("unclosed {range}")
    return tokens


def _render(tokens, data) -> str:
    out = []
    for t in tokens:
        if t[0] == "text":
            out.append(t[1])
        elif t[0] == "expr":
            out.append(" ".join(_show(v) for v in _walk([data], t[1])))
        else:
            for item in _walk([data], t[1]):
                out.append(_render(t[2], item))
    return "".join(out)


def render(template: str, data) -> str:
    return _render(_parse(template), data)
