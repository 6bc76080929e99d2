"""Scheduler configuration: profiles (which plugins run at which extension
point, with which score weights and args), loaded from a
KubeSchedulerConfiguration file (`kctl-scheduler --config FILE`).

The file has kube-scheduler's shape (apis/config/types.go, v1):

    apiVersion: kubescheduler.config.k8s.io/v1
    kind: KubeSchedulerConfiguration
    percentageOfNodesToScore: 0          # optional, 0-100 (0 = adaptive)
    profiles:
    - schedulerName: default-scheduler   # may be omitted when there is one profile
      percentageOfNodesToScore: 30       # optional, overrides the top-level value
      plugins:
        score:
          disabled: [{name: OwnerSpread}]
          enabled: [{name: NodeAffinity, weight: 5}]
      pluginConfig:
      - name: NodeAffinity
        args: {}

Each profile starts from the default profile (`default_profile()`, today's
behaviour) and merges the file's plugin sets into it per extension point
the way kube-scheduler's mergePluginSet does: `disabled` names (or "*")
drop defaults; an `enabled` name that is a default replaces it in place (its
weight changes), other enabled names are appended in order. `multiPoint`
enables a plugin at every extension point it implements, unless that
point's own set names it; its `disabled` drops a plugin from every point.
Supported points: multiPoint, preFilter, filter, postFilter, preScore,
score, preBind, bind (others are refused until a plugin needs them).
A score weight left out or 0 is 1, as in kube-scheduler.

Validation collects every problem before failing and names each field
(`profiles[0].plugins.score.enabled[1].name: Unsupported value: "Foo":
supported values: ...`); unknown fields are refused (strict decoding), and
so is a plugin at a point it does not implement. The scheduler refuses to
start on any of them (machinery.errors.ConfigError).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import yaml

from machinery import errors
from machinery.errors import FieldError
from scheduler.framework import DEFAULT_SCHEDULER, points_of

API_VERSION = "kubescheduler.config.k8s.io/v1"
KIND = "KubeSchedulerConfiguration"
POINTS = ("preFilter", "filter", "postFilter", "preScore", "score", "preBind", "bind")


@dataclass(frozen=True)
class PluginRef:
    name: str
    weight: float = 0.0          # score only


@dataclass
class Profile:
    scheduler_name: str = DEFAULT_SCHEDULER
    plugins: dict[str, list[PluginRef]] = field(default_factory=dict)   # point -> enabled, in order
    plugin_config: dict[str, dict] = field(default_factory=dict)        # plugin name -> args
    percentage_of_nodes_to_score: int | None = None                     # None: the top-level value

    def weights(self) -> dict[str, float]:
        return {r.name: r.weight for r in self.plugins.get("score", ())}

    def with_weights(self, weights: dict[str, float]) -> "Profile":
        """A copy whose score plugins have these weights (0 skips a plugin
        but keeps it in the decision record's weights)."""
        score = [replace(r, weight=weights.get(r.name, r.weight)) for r in self.plugins.get("score", ())]
        return replace(self, plugins={**self.plugins, "score": score})


def default_profile(name: str = DEFAULT_SCHEDULER) -> Profile:
    """Today's behaviour (kube-scheduler's getDefaultPlugins, our plugins)."""
    refs = lambda *names: [PluginRef(n) for n in names]   # noqa: E731
    return Profile(name, {
        "preFilter": refs("PodTopologySpread", "InterPodAffinity", "VolumeBinding"),
        "filter": refs("NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity", "NodeResourcesFit",
                       "PodTopologySpread", "InterPodAffinity", "VolumeBinding"),
        "postFilter": refs("DefaultPreemption"),
        "preScore": refs("NodeAffinity", "PodTopologySpread", "InterPodAffinity"),
        "score": [PluginRef("LeastAllocated", 1.0), PluginRef("BalancedAllocation", 1.0),
                  PluginRef("NodeAffinity", 2.0), PluginRef("OwnerSpread", 2.0),
                  PluginRef("PodTopologySpread", 2.0), PluginRef("InterPodAffinity", 2.0)],
        "preBind": refs("VolumeBinding"),
        "bind": refs("DefaultBinder"),
    })


@dataclass
class Config:
    percentage_of_nodes_to_score: int = 0     # 0 = adaptive, like kube-scheduler
    profiles: list[Profile] = field(default_factory=lambda: [default_profile()])
    batch_size: int = 128                     # bindings per BindBatch (etcd txn limit)
    binds_in_flight: int = 2                  # BindBatch calls outstanding at once


# ------------------------------------------------------------------ loading

def load(path: str, registry) -> tuple[int, list[Profile]]:
    """(percentageOfNodesToScore, profiles) from a KubeSchedulerConfiguration file."""
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise errors.ConfigError(f"scheduler config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"scheduler config {path}: not YAML: {exc}") from exc
    return parse(doc, registry, source=path)


def parse(doc, registry, source: str = "") -> tuple[int, list[Profile]]:
    v = _Validator(registry)
    pct, profiles = v.document(doc)
    if v.problems:
        body = v.problems[0] if len(v.problems) == 1 else "[" + ", ".join(v.problems) + "]"
        where = f" {source}" if source else ""
        raise errors.ConfigError(f"invalid {KIND}{where}: {body}")
    return pct, profiles


class _Validator:
    """Walks the document, collecting problems (strings) as it goes."""

    def __init__(self, registry):
        self.registry = registry
        self.problems: list[str] = []

    def bad(self, fe: FieldError) -> None:
        self.problems.append(str(fe))

    def mapping(self, value, path: str, allowed: tuple[str, ...]) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.bad(errors.invalid(path, value, "must be an object"))
            return {}
        for key in value:
            if key not in allowed:
                self.problems.append(f'unknown field "{path + "." if path else ""}{key}"')
        return value

    def listing(self, value, path: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.bad(errors.invalid(path, value, "must be a list"))
            return []
        return value

    def percentage(self, value, path: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            self.bad(errors.invalid(path, value, "not in valid range [0-100]"))
            return None
        return value

    def document(self, doc) -> tuple[int, list[Profile]]:
        if not isinstance(doc, dict):
            self.problems.append("the document must be an object")
            return 0, []
        doc = self.mapping(doc, "", ("apiVersion", "kind", "percentageOfNodesToScore", "profiles"))
        if doc.get("apiVersion") != API_VERSION:
            self.bad(errors.not_supported("apiVersion", doc.get("apiVersion"), [API_VERSION]))
        if doc.get("kind") != KIND:
            self.bad(errors.not_supported("kind", doc.get("kind"), [KIND]))
        pct = self.percentage(doc.get("percentageOfNodesToScore"), "percentageOfNodesToScore") or 0
        raw = self.listing(doc.get("profiles"), "profiles") or [{}]
        profiles, seen = [], {}
        for i, p in enumerate(raw):
            path = f"profiles[{i}]"
            prof = self.profile(p, path, default_name=len(raw) == 1)
            if prof.scheduler_name in seen:
                self.bad(errors.duplicate(f"{path}.schedulerName", prof.scheduler_name))
            seen.setdefault(prof.scheduler_name, i)
            profiles.append(prof)
        return pct, profiles

    def profile(self, raw, path: str, default_name: bool) -> Profile:
        raw = self.mapping(raw, path, ("schedulerName", "percentageOfNodesToScore", "plugins", "pluginConfig"))
        name = raw.get("schedulerName", DEFAULT_SCHEDULER if default_name else None)
        if not isinstance(name, str) or not name:
            self.bad(errors.required(f"{path}.schedulerName"))
            name = ""
        prof = default_profile(name)
        prof.percentage_of_nodes_to_score = self.percentage(raw.get("percentageOfNodesToScore"),
                                                            f"{path}.percentageOfNodesToScore")
        plugins = self.mapping(raw.get("plugins"), f"{path}.plugins", ("multiPoint", *POINTS))
        sets = {point: self.plugin_set(plugins.get(point), f"{path}.plugins.{point}", point)
                for point in ("multiPoint", *POINTS)}
        for point in POINTS:
            prof.plugins[point] = _merge(prof.plugins[point], sets[point], sets["multiPoint"], point,
                                         self.registry)
        if not prof.plugins["bind"]:
            self.bad(errors.required(f"{path}.plugins.bind.enabled", "at least one bind plugin is needed"))
        prof.plugin_config = self.plugin_config(raw.get("pluginConfig"), f"{path}.pluginConfig")
        return prof

    def plugin_set(self, raw, path: str, point: str) -> tuple[list[PluginRef], set[str]]:
        raw = self.mapping(raw, path, ("enabled", "disabled"))
        enabled, names = [], set()
        for i, e in enumerate(self.listing(raw.get("enabled"), f"{path}.enabled")):
            ref = self.plugin(e, f"{path}.enabled[{i}]", point, weighted=point in ("score", "multiPoint"))
            if ref is None:
                continue
            if ref.name in names:
                self.bad(errors.duplicate(f"{path}.enabled[{i}].name", ref.name))
                continue
            names.add(ref.name)
            enabled.append(ref)
        disabled = set()
        for i, e in enumerate(self.listing(raw.get("disabled"), f"{path}.disabled")):
            e = self.mapping(e, f"{path}.disabled[{i}]", ("name",))
            name = e.get("name")
            if name == "*" or self.known(name, f"{path}.disabled[{i}].name"):
                disabled.add(name)
        return enabled, disabled

    def known(self, name, path: str) -> bool:
        if not isinstance(name, str) or not name:
            self.bad(errors.required(path))
            return False
        if name not in self.registry:
            self.bad(errors.not_supported(path, name, self.registry.names()))
            return False
        return True

    def plugin(self, raw, path: str, point: str, weighted: bool) -> PluginRef | None:
        raw = self.mapping(raw, path, ("name", "weight") if weighted else ("name",))
        name = raw.get("name")
        if not self.known(name, f"{path}.name"):
            return None
        if point != "multiPoint" and point not in points_of(self.registry[name]):
            self.bad(errors.invalid(f"{path}.name", name, f"plugin does not extend the {point} extension point"))
            return None
        weight = raw.get("weight", 0)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            self.bad(errors.invalid(f"{path}.weight", weight, "must be a non-negative integer"))
            return None
        return PluginRef(name, float(weight or 1))

    def plugin_config(self, raw, path: str) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for i, e in enumerate(self.listing(raw, path)):
            p = f"{path}[{i}]"
            e = self.mapping(e, p, ("name", "args"))
            name = e.get("name")
            if not self.known(name, f"{p}.name"):
                continue
            if name in out:
                self.bad(errors.duplicate(f"{p}.name", name))
                continue
            args = self.mapping(e.get("args"), f"{p}.args", tuple(sorted(self.registry[name].ARGS)))
            out[name] = dict(args)
        return out


def _merge(defaults: list[PluginRef], custom: tuple[list[PluginRef], set[str]],
           multi: tuple[list[PluginRef], set[str]], point: str, registry) -> list[PluginRef]:
    """kube-scheduler's mergePluginSet for one point, then multiPoint."""
    enabled, disabled = custom
    disabled = disabled | multi[1]
    by_name = {r.name: r for r in enabled}
    out, replaced = [], set()
    if "*" not in disabled:
        for r in defaults:
            if r.name in disabled:
                continue
            if r.name in by_name:
                r = by_name[r.name]
                replaced.add(r.name)
            out.append(r)
    out += [r for r in enabled if r.name not in replaced]
    named = set(by_name) | custom[1]
    for r in multi[0]:
        if r.name in named or point not in points_of(registry[r.name]):
            continue
        ref = r if point == "score" else PluginRef(r.name)
        out = [ref if o.name == r.name else o for o in out]
        if all(o.name != r.name for o in out):
            out.append(ref)
    return out
