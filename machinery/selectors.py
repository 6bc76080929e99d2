"""Label and field selectors, after k8s.io/apimachinery/pkg/labels and /fields.

Label selectors come in two shapes:

* the string form users type (`kctl get -l 'app=web,tier in (fe,be),!canary'`),
  parsed by `parse_label_selector`; the empty string selects everything;
* the API form (`metav1.LabelSelector`: matchLabels + matchExpressions),
  converted by `from_proto`, which behaves like Kubernetes'
  `LabelSelectorAsSelector`: **None (a nil selector) matches nothing, an
  empty message matches everything**. A protobuf message field can't be nil,
  so callers holding a parent use `from_field(parent, "selector")`, which
  checks presence first.

Both give a `LabelSelector` (an AND of `Requirement`s) with `.matches(labels)`.

Field selectors (`--field-selector spec.nodeName=n1`) live in
machinery/fieldselectors.py; their public names are re-exported here, so
`selectors.parse_field_selector`, `selectors.field_value`, ... work as before.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from machinery.fieldselectors import (FIELDS_BY_KIND, FieldRequirement, FieldSelector,  # noqa: F401 (re-exported)
                                      field_value, parse_field_selector, supported_fields)

# operators (string values as in Kubernetes' selection package)
IN, NOT_IN, EXISTS, DOES_NOT_EXIST = "in", "notin", "exists", "!"
EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GT, LT = "=", "==", "!=", "gt", "lt"

_PROTO_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _key_error(key: str) -> str | None:
    """Why `key` is not a qualified name (label key), or None."""
    prefix, sep, name = key.rpartition("/")
    if sep and not prefix:
        return f"invalid label key {key!r}: prefix part must be non-empty"
    if sep and (len(prefix) > 253 or not _PREFIX.fullmatch(prefix)):
        return f"invalid label key {key!r}: prefix part must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _NAME.fullmatch(name):
        return (f"invalid label key {key!r}: name part must consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character "
                "and be at most 63 characters")
    return None


def _value_error(value: str) -> str | None:
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        return (f"invalid label value: {value!r}: a valid label must be an empty string or "
                "consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character and be at most 63 characters")
    return None


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __post_init__(self):
        err = _key_error(self.key)
        if err:
            raise ValueError(err)
        op, n = self.operator, len(self.values)
        if op in (IN, NOT_IN) and n == 0:
            raise ValueError("for 'in', 'notin' operators, values set can't be empty")
        if op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS) and n != 1:
            raise ValueError("exact-match compatibility requires one single value")
        if op in (EXISTS, DOES_NOT_EXIST) and n:
            raise ValueError("values set must be empty for exists and does not exist")
        if op in (GT, LT):
            if n != 1 or not re.fullmatch(r"-?[0-9]+", self.values[0]):
                raise ValueError("for 'Gt', 'Lt' operators, exactly one integer value is required")
        elif op not in (IN, NOT_IN, EXISTS, DOES_NOT_EXIST, EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            raise ValueError(f"operator {op!r} is not recognized")
        for v in self.values:
            err = _value_error(v)
            if err:
                raise ValueError(err)

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        present = self.key in labels
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if op == EXISTS:
            return present
        if op == DOES_NOT_EXIST:
            return not present
        if not present:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if op == GT else have < want

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({','.join(sorted(self.values))})"
        if op in (GT, LT):
            return f"{self.key}{'>' if op == GT else '<'}{self.values[0]}"
        return f"{self.key}{op}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    """An AND of requirements. `nothing=True` is the nil selector."""
    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @property
    def empty(self) -> bool:
        """True when it selects everything (no requirements)."""
        return not self.nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)


def requirements(sel: LabelSelector) -> tuple[Requirement, ...]:
    """The requirements, sorted by key (for indexing, e.g. on an exact `key=value`)."""
    return sel.requirements


def _sorted(reqs: Iterable[Requirement]) -> tuple[Requirement, ...]:
    return tuple(sorted(reqs, key=lambda r: (r.key, r.operator, r.values)))


# ------------------------------------------------------------ string syntax

_TOKEN = re.compile(r"\s*(==|!=|=|\(|\)|,|!|>|<|[^\s=!(),<>]+)")


def _tokens(s: str) -> list[str]:
    out, pos = [], 0
    s = s.rstrip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if m is None:
            raise ValueError(f"unable to parse requirement: {s[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_label_selector(s: str) -> LabelSelector:
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h` (and `k>1`, `k<5`).

    The empty string selects everything. Raises ValueError with a message
    naming what is wrong."""
    toks = _tokens(s or "")
    reqs: list[Requirement] = []
    i = 0

    def peek(k=0):
        return toks[i + k] if i + k < len(toks) else None

    def is_word(t):
        return t is not None and t not in ("==", "!=", "=", "(", ")", ",", "!", ">", "<")

    while i < len(toks):
        if peek() == "!":
            i += 1
            if not is_word(peek()):
                raise ValueError(f"found {peek()!r}, expected: identifier after '!'")
            reqs.append(Requirement(toks[i], DOES_NOT_EXIST))
            i += 1
        elif is_word(peek()):
            key = toks[i]
            i += 1
            op = peek()
            if op is None or op == ",":
                reqs.append(Requirement(key, EXISTS))
            elif op in ("=", "==", "!=", ">", "<"):
                i += 1
                value = ""
                if is_word(peek()):
                    value = toks[i]
                    i += 1
                elif peek() not in (None, ","):
                    raise ValueError(f"found {peek()!r}, expected: identifier after {op!r}")
                reqs.append(Requirement(key, {">": GT, "<": LT}.get(op, op), (value,)))
            elif op in (IN, NOT_IN):
                i += 1
                if peek() != "(":
                    raise ValueError(f"found {peek()!r}, expected: '('")
                i += 1
                values: list[str] = []
                expect_value = True
                while True:
                    t = peek()
                    if t is None:
                        raise ValueError("found end of input, expected: ')'")
                    if t == ")":
                        if expect_value and values:
                            values.append("")      # trailing comma: `in (a,)` has ""
                        i += 1
                        break
                    if t == ",":
                        if expect_value:
                            values.append("")
                        expect_value = True
                    elif is_word(t) and expect_value:
                        values.append(t)
                        expect_value = False
                    else:
                        raise ValueError(f"found {t!r}, expected: ',' or ')'")
                    i += 1
                reqs.append(Requirement(key, op, tuple(sorted(set(values)))))
            else:
                raise ValueError(f"found {op!r}, expected: in, notin, =, ==, !=, gt, lt")
        else:
            raise ValueError(f"found {peek()!r}, expected: !, identifier, or 'end of string'")
        if i < len(toks):
            if toks[i] != ",":
                raise ValueError(f"found {toks[i]!r}, expected: ',' or 'end of string'")
            i += 1
            if i == len(toks):
                raise ValueError("found end of input after ',', expected: !, identifier")
    return LabelSelector(_sorted(reqs))


# --------------------------------------------------------------- API form

def from_proto(sel) -> LabelSelector:
    """metav1.LabelSelector -> LabelSelector, like LabelSelectorAsSelector.

    `None` (a nil selector) matches nothing; a selector with neither
    matchLabels nor matchExpressions matches everything. Raises ValueError
    for an unknown operator or a bad key/value count. Results are cached by
    the selector's serialized bytes (controllers convert the same few
    selectors over and over); a LabelSelector is immutable, so sharing is safe."""
    if sel is None:
        return NOTHING
    return _from_bytes(sel.SerializeToString(deterministic=True), type(sel))


@functools.lru_cache(maxsize=4096)
def _from_bytes(raw: bytes, cls) -> LabelSelector:
    sel = cls.FromString(raw)
    reqs = [Requirement(k, EQUALS, (v,)) for k, v in sel.match_labels.items()]
    for expr in sel.match_expressions:
        op = _PROTO_OPS.get(expr.operator)
        if op is None:
            raise ValueError(f'"{expr.operator}" is not a valid label selector operator')
        reqs.append(Requirement(expr.key, op, tuple(sorted(set(expr.values)))))
    return LabelSelector(_sorted(reqs))


def from_field(parent, name: str = "selector") -> LabelSelector:
    """`from_proto` of `parent.<name>`, treating an unset field as nil (matches nothing)."""
    return from_proto(getattr(parent, name) if parent.HasField(name) else None)


def from_map(labels: Mapping[str, str]) -> LabelSelector:
    """A Service-style selector map; like labels.SelectorFromSet, empty matches everything."""
    return LabelSelector(_sorted(Requirement(k, EQUALS, (v,)) for k, v in labels.items()))


def proto_to_string(sel) -> str:
    """The string kubectl prints in the SELECTOR column (`app=web,tier in (fe)`);
    `<none>` for nil or empty, like kubectl."""
    if sel is None:
        return "<none>"
    try:
        s = str(from_proto(sel))
    except ValueError:
        return "<error>"
    return s or "<none>"


def matches_topology(terms, labels: Mapping[str, str]) -> bool:
    """A StorageClass's ``allowedTopologies`` against a node's labels (Kubernetes'
    MatchTopologySelectorTerms): no terms admit every node; terms are ORed, the
    expressions of a term ANDed, each one ``key In values``; an empty term admits none."""
    if not terms:
        return True
    return any(t.match_label_expressions and all(labels.get(r.key) in r.values for r in t.match_label_expressions)
               for t in terms)
