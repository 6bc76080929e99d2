"""ConfigMap and Secret validation (pkg/apis/core/validation: ValidateConfigMap,
ValidateSecret and their Update variants).

Keys are Kubernetes' config keys (`[-._a-zA-Z0-9]+`, at most 253
characters, not `.`/`..`, not starting with `..`); all values together may
hold at most 1 MiB; each Secret type requires its keys
(`kubernetes.io/tls`: `tls.crt` and `tls.key`, …). Secrets are validated
after stringData has been merged into data (machinery/defaults.py), so a
bad stringData key is reported under `data`, as Kubernetes does. An
`immutable: true` object keeps its data for ever.
"""
from __future__ import annotations

import json
import re

from machinery.errors import FieldError, forbidden, invalid, required, too_long
from machinery.validation.common import IMMUTABLE_MSG, each, max_len_error, regex_error

MAX_SECRET_SIZE = 1 * 1024 * 1024        # core.MaxSecretSize, also ConfigMaps' limit
CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"
CONFIG_MAP_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_CONFIG_MAP_KEY = re.compile(CONFIG_MAP_KEY_FMT)
IMMUTABLE_SET_MSG = "field is immutable when `immutable` is set"
REDACTED = "<secret contents redacted>"

SECRET_TYPES = {   # type -> keys of data it requires (checked in _secret_type)
    "Opaque": (),
    "kubernetes.io/service-account-token": (),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/basic-auth": ("username", "password"),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "bootstrap.kubernetes.io/token": (),
}
SERVICE_ACCOUNT_NAME_KEY = "kubernetes.io/service-account.name"


def is_config_map_key(key: str) -> list[str]:
    """validation.IsConfigMapKey."""
    errs = []
    if len(key) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_MAP_KEY.fullmatch(key):
        errs.append(regex_error(CONFIG_MAP_KEY_MSG, CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _keys(m, path: str) -> tuple[list[FieldError], int]:
    errs, size = [], 0
    for key in sorted(m):
        errs += each(f"{path}[{key}]", key, is_config_map_key(key))
        size += len(m[key])
    return errs, size


# ----------------------------------------------------------------- ConfigMap

def validate_config_map(cm) -> list[FieldError]:
    errs, size = _keys(cm.data, "data")
    for key in sorted(cm.data):
        if key in cm.binary_data:
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    more, binary_size = _keys(cm.binary_data, "binaryData")
    errs += more
    if size + binary_size > MAX_SECRET_SIZE:
        # Kubernetes reports this on the whole object (an empty path)
        errs.append(too_long("", MAX_SECRET_SIZE))
    return errs


def _immutable(new, old, fields: tuple[str, ...]) -> list[FieldError]:
    if not (old.HasField("immutable") and old.immutable):
        return []
    errs = []
    if not (new.HasField("immutable") and new.immutable):
        errs.append(forbidden("immutable", IMMUTABLE_SET_MSG))
    for name, json_name in fields:
        if dict(getattr(new, name)) != dict(getattr(old, name)):
            errs.append(forbidden(json_name, IMMUTABLE_SET_MSG))
    return errs


def validate_config_map_update(new, old) -> list[FieldError]:
    return _immutable(new, old, (("data", "data"), ("binary_data", "binaryData")))


# -------------------------------------------------------------------- Secret

def _secret_type(secret) -> list[FieldError]:
    data, typ = secret.data, secret.type
    if typ == "kubernetes.io/service-account-token":
        if not secret.metadata.annotations.get(SERVICE_ACCOUNT_NAME_KEY):
            return [required(f"metadata.annotations[{SERVICE_ACCOUNT_NAME_KEY}]", "")]
    elif typ in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = SECRET_TYPES[typ][0]
        if key not in data:
            return [required(f"data[{key}]", "")]
        try:
            parsed = json.loads(data[key])
        except ValueError as exc:      # json.JSONDecodeError and non-UTF-8 bytes too
            return [invalid(f"data[{key}]", REDACTED, f"invalid JSON: {exc}")]
        if not isinstance(parsed, dict):
            return [invalid(f"data[{key}]", REDACTED,
                            "json: cannot unmarshal into Go value of type map[string]interface {}")]
    elif typ == "kubernetes.io/basic-auth":
        # either key may be empty, but one must be there; Kubernetes' field
        # path really is the literal `data[%s][username]`
        if "username" not in data and "password" not in data:
            return [required("data[%s][username]", ""), required("data[%s][password]", "")]
    elif typ == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            return [required("data[%s][ssh-privatekey]", "")]
    elif typ == "kubernetes.io/tls":
        return [required(f"data[{key}]", "") for key in ("tls.crt", "tls.key") if key not in data]
    return []


def validate_secret(secret) -> list[FieldError]:
    errs, size = _keys(secret.data, "data")
    if size > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))
    return errs + _secret_type(secret)


def validate_secret_update(new, old) -> list[FieldError]:
    errs = [] if new.type == old.type else [invalid("type", new.type, IMMUTABLE_MSG)]
    return errs + _immutable(new, old, (("data", "data"),))
