"""Building blocks shared by every kind's validation, after
k8s.io/apimachinery/pkg/util/validation and .../api/validation.

The `is_*` functions return a list of messages (empty when valid), exactly
like Kubernetes' IsDNS1123Label & co; the `validate_*` functions turn them
into FieldErrors at a given path. Messages are Kubernetes' own, so that an
error printed by kctl reads like the one kubectl users already know.
"""
from __future__ import annotations

import ipaddress
import re

from machinery.errors import FieldError, duplicate, forbidden, invalid, required, too_long

# ------------------------------------------------------------------ regexes

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
ENV_VAR_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
PERCENT_FMT = "[0-9]+%"
C_IDENTIFIER_FMT = "[A-Za-z_][A-Za-z0-9_]*"

_RE = {f: re.compile(f) for f in (DNS1123_LABEL_FMT, DNS1123_SUBDOMAIN_FMT, DNS1035_LABEL_FMT,
                                  QUALIFIED_NAME_FMT, LABEL_VALUE_FMT, ENV_VAR_NAME_FMT,
                                  PERCENT_FMT, C_IDENTIFIER_FMT)}


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Kubernetes' RegexError (including its double space before 'or')."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    out = msg + " (e.g. "
    for i, e in enumerate(examples):
        if i:
            out += " or "
        out += f"'{e}', "
    return out + f"regex used for validation is '{fmt}')"


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def _match(fmt: str, value: str) -> bool:
    return _RE[fmt].fullmatch(value) is not None


DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                     "or '-', and must start and end with an alphanumeric character")
DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                         "characters, '-' or '.', and must start and end with an alphanumeric character")
DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                     "start with an alphabetic character, and end with an alphanumeric character")
QUALIFIED_NAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                      "end with an alphanumeric character")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, "
                   "'-', '_' or '.', and must start and end with an alphanumeric character")
ENV_VAR_NAME_MSG = ("a valid environment variable name must consist of alphabetic characters, "
                    "digits, '_', '-', or '.', and must not start with a digit")
PERCENT_MSG = "a valid percent string must be a numeric string followed by an ending '%'"
PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"
NON_NEGATIVE_MSG = "must be greater than or equal to 0"
IMMUTABLE_MSG = "field is immutable"


def is_dns1123_label(v: str) -> list[str]:
    errs = []
    if len(v) > 63:
        errs.append(max_len_error(63))
    if not _match(DNS1123_LABEL_FMT, v):
        errs.append(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(v: str) -> list[str]:
    errs = []
    if len(v) > 253:
        errs.append(max_len_error(253))
    if not _match(DNS1123_SUBDOMAIN_FMT, v):
        errs.append(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(v: str) -> list[str]:
    errs = []
    if len(v) > 63:
        errs.append(max_len_error(63))
    if not _match(DNS1035_LABEL_FMT, v):
        errs.append(regex_error(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(v: str) -> list[str]:
    """A label/annotation key: `[prefix/]name`, prefix a DNS subdomain."""
    parts = v.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        errs = []
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return ["a qualified name " + regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName",
                                                  "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if name and not _match(QUALIFIED_NAME_FMT, name):
        errs.append("name part " + regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName",
                                               "my.name", "123-abc"))
    return errs


def is_label_value(v: str) -> list[str]:
    errs = []
    if len(v) > 63:
        errs.append(max_len_error(63))
    if not _match(LABEL_VALUE_FMT, v):
        errs.append(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_port_name(v: str) -> list[str]:
    """IANA_SVC_NAME: at most 15 chars, [-a-z0-9], one letter, no `--`, no edge `-`."""
    errs = []
    if len(v) > 15:
        errs.append(max_len_error(15))
    if not re.fullmatch(r"[-a-z0-9]+", v):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in v:
        errs.append("must not contain consecutive hyphens")
    if v and not re.search(r"[a-z]", v):
        errs.append("must contain at least one letter (a-z)")
    if v.startswith("-") or v.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_port_num(n: int) -> list[str]:
    return [] if 1 <= n <= 65535 else [PORT_RANGE_MSG]


def is_env_var_name(v: str) -> list[str]:
    errs = []
    if not _match(ENV_VAR_NAME_FMT, v):
        errs.append(regex_error(ENV_VAR_NAME_MSG, ENV_VAR_NAME_FMT, "my.env-name", "MY_ENV.NAME",
                                "MyEnvName1"))
    if v in (".", ".."):
        errs.append(f"must not be '{v}'")
    elif v.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_percent(v: str) -> list[str]:
    return [] if _match(PERCENT_FMT, v) else [regex_error(PERCENT_MSG, PERCENT_FMT, "1%", "93%")]


def is_ipv4(v: str) -> bool:
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        return False
    return True


def is_ip(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


def is_cidr(v: str) -> bool:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return False
    return "/" in v


# ------------------------------------------------------------ FieldErrors

def each(path: str, value, messages: list[str]) -> list[FieldError]:
    return [invalid(path, value, m) for m in messages]


def non_negative(path: str, value: int) -> list[FieldError]:
    return [invalid(path, value, NON_NEGATIVE_MSG)] if value < 0 else []


def immutable(path: str, new, old) -> list[FieldError]:
    return [invalid(path, new, IMMUTABLE_MSG)] if new != old else []


def validate_labels(labels, path: str) -> list[FieldError]:
    errs = []
    for k, v in labels.items():
        errs += each(path, k, is_qualified_name(k))
        errs += each(path, v, is_label_value(v))
    return errs


TOTAL_ANNOTATION_SIZE = 256 * 1024


def validate_annotations(annotations, path: str) -> list[FieldError]:
    errs, total = [], 0
    for k, v in annotations.items():
        errs += each(path, k, is_qualified_name(k.lower()))
        total += len(k) + len(v)
    if total > TOTAL_ANNOTATION_SIZE:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE))
    return errs


def validate_port_num_or_name(port, path: str) -> list[FieldError]:
    """An IntOrString port: 1-65535 or an IANA_SVC_NAME (ValidatePortNumOrName;
    an unset port is the int 0, hence out of range)."""
    if port.WhichOneof("value") == "str_val":
        return each(path, port.str_val, is_port_name(port.str_val))
    return each(path, port.int_val, is_port_num(port.int_val))


def int_or_string_value(v):
    which = v.WhichOneof("value")
    return v.str_val if which == "str_val" else v.int_val


def validate_selector_proto(sel, path: str) -> list[FieldError]:
    """metav1 validation.ValidateLabelSelector."""
    errs = validate_labels(sel.match_labels, f"{path}.matchLabels")
    for i, expr in enumerate(sel.match_expressions):
        p = f"{path}.matchExpressions[{i}]"
        op = expr.operator
        if op in ("In", "NotIn"):
            if not expr.values:
                errs.append(required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if expr.values:
                errs.append(forbidden(f"{p}.values",
                                      "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(f"{p}.operator", op, "not a valid selector operator"))
        errs += each(f"{p}.key", expr.key, is_qualified_name(expr.key))
        for j, v in enumerate(expr.values):
            errs += each(f"{p}.values[{j}]", v, is_label_value(v))
    return errs


def duplicates(path_fmt: str, values) -> list[FieldError]:
    """Duplicate errors for repeated values; path_fmt takes the index."""
    seen, errs = set(), []
    for i, v in enumerate(values):
        if v in seen:
            errs.append(duplicate(path_fmt.format(i), v))
        seen.add(v)
    return errs
