"""Kubernetes' renderings of patch errors, so kctl's messages read like
Kubernetes': Go's %v of decoded JSON (`map[name:app]`), reflect type names
(`map[string]interface {}`), and the 422 that apimachinery's
NewGenericServerResponse builds (reason Invalid, a fixed message, the
detailed error kept as a cause of type UnexpectedServerResponse)."""
from __future__ import annotations

from machinery import errors
from machinery.pb import api_pb2

UNPROCESSABLE = "the server rejected our request due to an error in our request"


class Unprocessable(errors.ApiError):
    """NewGenericServerResponse(422): reason Invalid, a fixed message."""
    reason, http_code = "Invalid", 422
    grpc_code = errors.Invalid.grpc_code


def unexpected_response(message: str):
    """NewGenericServerResponse keeps the server's message as a cause of type UnexpectedServerResponse."""
    return api_pb2.StatusCause(reason="UnexpectedServerResponse", message=message)


def bad(msg: str) -> errors.BadRequest:
    return errors.BadRequest(msg)


# --------------------------------------------------------- Go's renderings

def gotype(v) -> str:
    """reflect.TypeOf(v).String() for values decoded from JSON."""
    if v is None:
        return "%!s(<nil>)"
    return {dict: "map[string]interface {}", list: "[]interface {}", str: "string",
            bool: "bool", int: "int64", float: "float64"}.get(type(v), type(v).__name__)


def gofmt(v) -> str:
    """fmt's %v for JSON values: map[a:1 b:x], [1 2], <nil>."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{gofmt(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(gofmt(x) for x in v) + "]"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    return str(v)


def no_merge_key(m, key):
    return bad(f"map: {gofmt(m)} does not contain declared merge key: {key}")


def bad_arg_type(expected: str, actual):
    return bad(f"expected a {expected}, but received a {gotype(actual)}")
