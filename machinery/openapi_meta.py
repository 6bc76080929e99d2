"""The apimachinery schemas that have no proto message of their own in kctl.

Kubernetes' OpenAPI documents refer to a few types from k8s.io/apimachinery
that kctl either represents differently (Time is a google.protobuf.Timestamp,
IntOrString a oneof message, Quantity a plain string, FieldsV1 a
google.protobuf.Struct) or only uses on the
wire of the HTTP API (ListMeta, Status, DeleteOptions, Patch). Their schemas
are written here in the v3 form the Kubernetes apiserver serves, with the
descriptions of Kubernetes' Go types; machinery/openapi_schemas.py builds
everything else from the descriptors.
"""
from __future__ import annotations

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
TIME = f"{META}.Time"
LIST_META = f"{META}.ListMeta"
STATUS = f"{META}.Status"
DELETE_OPTIONS = f"{META}.DeleteOptions"
PATCH = f"{META}.Patch"
FIELDS_V1 = f"{META}.FieldsV1"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_REF = "#/components/schemas/"

API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers "
    "should convert recognized schemas to the latest internal value, and may reject "
    "unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")
KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers "
    "may infer this from the endpoint the client submits requests to. Cannot be updated. In "
    "CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")


def _s(description: str, **schema) -> dict:
    return {"description": description, **schema}


def _str(description: str) -> dict:
    return _s(description, type="string")


def _int(description: str, fmt: str = "int32") -> dict:
    return _s(description, type="integer", format=fmt)


def _obj(name: str, description: str) -> dict:
    return {"allOf": [{"$ref": _REF + name}], "description": description}


def _object(description: str, properties: dict, **extra) -> dict:
    return {"description": description, "type": "object", "properties": properties, **extra}


def _type_meta() -> dict:
    return {"apiVersion": _str(API_VERSION_DOC), "kind": _str(KIND_DOC)}


def list_schema(kind: str, item_ref: dict, list_meta_ref: dict, gvk: dict) -> dict:
    """The schema of `<Kind>List`, the body of a list response."""
    return _object(
        f"{kind}List is a list of {kind} objects.",
        {**_type_meta(),
         "items": _s(f"Items is the list of {kind} objects.", type="array",
                     items={"allOf": [item_ref], "default": {}}),
         "metadata": {"allOf": [list_meta_ref], "default": {},
                      "description": "Standard list metadata. More info: https://git.k8s.io/"
                                     "community/contributors/devel/sig-architecture/"
                                     "api-conventions.md#metadata"}},
        required=["items"], **{"x-kubernetes-group-version-kind": [gvk]})


def fixed_schemas() -> dict[str, dict]:
    return {
        TIME: _s("Time is a wrapper around time.Time which supports correct marshaling to YAML "
                 "and JSON. It is written as an RFC 3339 date and time in UTC.",
                 type="string", format="date-time"),
        INT_OR_STRING: _s(
            "IntOrString is a type that can hold an int32 or a string.  When used in JSON or "
            "YAML marshalling and unmarshalling, it produces or consumes the inner type.  This "
            "allows you to have, for example, a JSON field that can accept a name or number.",
            format="int-or-string", oneOf=[{"type": "integer"}, {"type": "string"}],
            **{"x-kubernetes-int-or-string": True}),
        QUANTITY: _s(
            "Quantity is a fixed-point representation of a number: a signed decimal number "
            "with an optional suffix, either a binary SI suffix (Ki, Mi, Gi, Ti, Pi, Ei), a "
            "decimal SI suffix (n, u, m, \"\", k, M, G, T, P, E) or a decimal exponent "
            "(e or E followed by a signed number), e.g. \"100m\", \"128Mi\", \"1.5\", \"1e3\". "
            "The server writes it back in canonical form.",
            oneOf=[{"type": "string"}, {"type": "number"}]),
        LIST_META: _object(
            "ListMeta describes metadata that synthetic resources must have, including lists "
            "and various status objects. A resource may have only one of {ObjectMeta, ListMeta}.",
            {"continue": _str(
                "continue may be set if the user set a limit on the number of items returned, "
                "and indicates that the server has more data available. The value is opaque and "
                "may be used to issue another request to the endpoint that served this list to "
                "retrieve the next set of available objects."),
             "remainingItemCount": _int(
                 "remainingItemCount is the number of subsequent items in the list which are not "
                 "included in this list response.", "int64"),
             "resourceVersion": _str(
                 "String that identifies the server's internal version of this object that can "
                 "be used by clients to determine when objects have changed. Value must be "
                 "treated as opaque by clients and passed unmodified back to the server. "
                 "Populated by the system. Read-only."),
             "selfLink": _str("Deprecated: selfLink is a legacy read-only field that is no "
                              "longer populated by the system.")}),
        STATUS: _object(
            "Status is a return value for calls that don't return other objects.",
            {**_type_meta(),
             "code": _int("Suggested HTTP return code for this status, 0 if not set."),
             "details": _obj(f"{META}.StatusDetails",
                             "Extended data associated with the reason.  Each reason may define "
                             "its own extended details. This field is optional and the data "
                             "returned is not guaranteed to conform to any schema except that "
                             "defined by the reason type."),
             "message": _str("A human-readable description of the status of this operation."),
             "metadata": {**_obj(LIST_META, "Standard list metadata."), "default": {}},
             "reason": _str("A machine-readable description of why this operation is in the "
                            "\"Failure\" status. If this value is empty there is no information "
                            "available."),
             "status": _str("Status of the operation. One of: \"Success\" or \"Failure\".")},
            **{"x-kubernetes-group-version-kind": [{"group": "", "kind": "Status",
                                                     "version": "v1"}]}),
        f"{META}.StatusDetails": _object(
            "StatusDetails is a set of additional properties that MAY be set by the server to "
            "provide additional information about a response.",
            {"causes": _s("The Causes array includes more details associated with the "
                          "StatusReason failure.", type="array",
                          items={"allOf": [{"$ref": _REF + f"{META}.StatusCause"}], "default": {}},
                          **{"x-kubernetes-list-type": "atomic"}),
             "group": _str("The group attribute of the resource associated with the status "
                           "StatusReason."),
             "kind": _str("The kind attribute of the resource associated with the status "
                          "StatusReason."),
             "name": _str("The name attribute of the resource associated with the status "
                          "StatusReason (when there is a single name which can be described)."),
             "retryAfterSeconds": _int("If specified, the time in seconds before the operation "
                                       "should be retried."),
             "uid": _str("UID of the resource.")}),
        f"{META}.StatusCause": _object(
            "StatusCause provides more information about an api.Status failure, including cases "
            "when multiple errors are encountered.",
            {"field": _str("The field of the resource that has caused this error, as named by "
                           "its JSON serialization, e.g. \"spec.containers[0].name\"."),
             "message": _str("A human-readable description of the cause of the error."),
             "reason": _str("A machine-readable description of the cause of the error.")}),
        DELETE_OPTIONS: _object(
            "DeleteOptions may be provided when deleting an API object.",
            {**_type_meta(),
             "dryRun": _s("When present, indicates that modifications should not be persisted. "
                          "Valid values are: - All: all dry run stages will be processed",
                          type="array", items={"type": "string", "default": ""},
                          **{"x-kubernetes-list-type": "atomic"}),
             "gracePeriodSeconds": _int(
                 "The duration in seconds before the object should be deleted. Value must be "
                 "non-negative integer. The value zero indicates delete immediately. If this "
                 "value is nil, the default grace period for the specified type will be used.",
                 "int64"),
             "orphanDependents": _s("Deprecated: please use the PropagationPolicy.",
                                    type="boolean"),
             "preconditions": _obj(f"{META}.Preconditions",
                                   "Must be fulfilled before a deletion is carried out. If not "
                                   "possible, a 409 Conflict status will be returned."),
             "propagationPolicy": _str(
                 "Whether and how garbage collection will be performed. Acceptable values are: "
                 "'Orphan' - orphan the dependents; 'Background' - allow the garbage collector "
                 "to delete the dependents in the background; 'Foreground' - a cascading policy "
                 "that deletes all dependents in the foreground.")}),
        f"{META}.Preconditions": _object(
            "Preconditions must be fulfilled before an operation (update, delete, etc.) is "
            "carried out.",
            {"resourceVersion": _str("Specifies the target ResourceVersion"),
             "uid": _str("Specifies the target UID.")}),
        FIELDS_V1: _s(
            "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format. "
            "Each key is either a '.' representing the field itself, and will always map to an "
            "empty set, or a string representing a sub-field or item. The string will follow one "
            "of these four formats: 'f:<name>', where <name> is the name of a field in a struct, "
            "or key in a map; 'v:<value>', where <value> is the exact json formatted value of a "
            "list item; 'i:<index>', where <index> is position of a item in a list; 'k:<keys>', "
            "where <keys> is a map of a list item's key fields to their unique values.",
            type="object"),
        PATCH: _s("Patch is provided to give a concrete name and type to the Kubernetes "
                  "PATCH request body.", type="object"),
    }
