"""A namespace's Pod Security policy from its labels (k8s.io/pod-security-admission/api:
PolicyToEvaluate, ParseLevel, ParseVersion).

    pod-security.kubernetes.io/enforce: baseline        (privileged | baseline | restricted)
    pod-security.kubernetes.io/enforce-version: v1.30   (latest | v1.x)
    ... the same for audit and warn

A mode without a label takes the default policy's level and version. kctl's
default is stricter than Kubernetes' (which enforces `privileged`): enforce
`baseline:latest`, audit and warn `privileged:latest` (DEFAULT; the
apiserver flag --pod-security-default-enforce changes the enforce level).
As in Kubernetes, a namespace that sets an enforce level stricter than its
warn level also warns at that level, and invalid labels fall back to
`restricted` for enforce and to `privileged` for audit and warn.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from machinery.errors import FieldError, invalid

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
PREFIX = "pod-security.kubernetes.io/"
ENFORCE, AUDIT, WARN = "enforce", "audit", "warn"
MODES = (ENFORCE, AUDIT, WARN)
LATEST = 10**6                      # the minor version "latest" evaluates as: every check applies
_VERSION = re.compile(r"^v1\.(0|[1-9][0-9]*)$")


@dataclass(frozen=True)
class LevelVersion:
    level: str
    minor: int = LATEST

    def __str__(self) -> str:
        return f"{self.level}:{'latest' if self.minor == LATEST else f'v1.{self.minor}'}"


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion
    audit: LevelVersion
    warn: LevelVersion

    def fully_privileged(self) -> bool:
        return all(lv.level == PRIVILEGED for lv in (self.enforce, self.audit, self.warn))


DEFAULT = Policy(LevelVersion(BASELINE), LevelVersion(PRIVILEGED), LevelVersion(PRIVILEGED))


def strictness(level: str) -> int:
    return LEVELS.index(level)


def _level(value: str, path: str, errs: list[FieldError], fallback: str) -> str:
    if value in LEVELS:
        return value
    errs.append(invalid(path, value, "must be one of " + ", ".join(LEVELS)))
    return fallback


def _minor(value: str, path: str, errs: list[FieldError]) -> int:
    if value == "latest":
        return LATEST
    m = _VERSION.match(value)
    if not m:
        errs.append(invalid(path, value, 'must be "latest" or "v1.x"'))
        return LATEST
    return int(m.group(1))


def policy_for(labels, default: Policy = DEFAULT) -> tuple[Policy, list[FieldError]]:
    """The policy a namespace's labels give, and the errors of its invalid labels."""
    errs: list[FieldError] = []
    modes = {ENFORCE: default.enforce, AUDIT: default.audit, WARN: default.warn}
    for mode in MODES:
        lv = modes[mode]
        key = PREFIX + mode
        if key in labels:
            fallback = RESTRICTED if mode == ENFORCE else PRIVILEGED
            lv = replace(lv, level=_level(labels[key], f"metadata.labels[{key}]", errs, fallback))
        if key + "-version" in labels:
            lv = replace(lv, minor=_minor(labels[key + "-version"], f"metadata.labels[{key}-version]", errs))
        modes[mode] = lv
    enforce_set = PREFIX + ENFORCE in labels and labels[PREFIX + ENFORCE] in LEVELS
    if enforce_set and PREFIX + WARN not in labels and \
            strictness(modes[ENFORCE].level) > strictness(modes[WARN].level):
        minor = modes[WARN].minor if PREFIX + WARN + "-version" in labels else modes[ENFORCE].minor
        modes[WARN] = LevelVersion(modes[ENFORCE].level, minor)
    return Policy(modes[ENFORCE], modes[AUDIT], modes[WARN]), errs


def with_enforce(level: str) -> Policy:
    """The default policy with another enforce level (the apiserver's --pod-security-default-enforce)."""
    return replace(DEFAULT, enforce=LevelVersion(level))
