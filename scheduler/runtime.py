"""The plugin registry and the framework runtime of one profile, after
kube-scheduler's framework/runtime (registry.go, framework.go).

* Registry: plugin name → plugin class. The class is the factory
  (`cls.new(args, handle)`, kube-scheduler's PluginFactory) and, by the
  interfaces it derives from, says which extension points it implements,
  so a configuration can be checked before anything is instantiated.
  `plugins.in_tree_registry()` holds ours; tests and future plugins
  `register()` more.
* Framework: one profile's plugins, instantiated once each (a plugin
  enabled at several points is one object, as in kube-scheduler), listed
  per extension point with the score weights, and the `run_*` methods that
  call them in order with the cycle's CycleState. Filters are not run here:
  the algorithm (algorithm.py) runs them vectorised, caching the static
  ones per pod shape.
"""
from __future__ import annotations

import asyncio
import inspect
import logging

import numpy as np

from machinery import errors
from scheduler.config import Profile
from scheduler.cycle_state import CycleState
from scheduler.binder import BindItem
from scheduler.framework import (SUCCESS, BindPlugin, Code, FilterPlugin, Handle, Plugin, PodInfo,
                                 PostFilterPlugin, PreBindPlugin, PreFilterPlugin, PreScorePlugin, ScorePlugin,
                                 Status)

log = logging.getLogger("kctl.scheduler")


class Registry:
    def __init__(self):
        self._plugins: dict[str, type[Plugin]] = {}

    def register(self, cls: type[Plugin]) -> None:
        if cls.name in self._plugins:
            raise errors.ConfigError(f'a plugin named "{cls.name}" already exists')
        self._plugins[cls.name] = cls

    def unregister(self, name: str) -> None:
        if self._plugins.pop(name, None) is None:
            raise errors.ConfigError(f'no plugin named "{name}" exists')

    def names(self) -> list[str]:
        return sorted(self._plugins)

    def __contains__(self, name) -> bool:
        return name in self._plugins

    def __getitem__(self, name: str) -> type[Plugin]:
        return self._plugins[name]


class Framework:
    def __init__(self, profile: Profile, registry: Registry, handle: Handle):
        self.profile = profile
        handle.framework = self
        instances: dict[str, Plugin] = {}

        def plugins(point: str, iface: type) -> list:
            out = []
            for ref in profile.plugins.get(point, ()):
                p = instances.get(ref.name)
                if p is None:
                    if ref.name not in registry:
                        raise errors.ConfigError(f'profile "{profile.scheduler_name}": plugin "{ref.name}" '
                                                 "is not registered")
                    p = instances[ref.name] = registry[ref.name].new(
                        profile.plugin_config.get(ref.name, {}), handle)
                if not isinstance(p, iface):
                    raise errors.ConfigError(f'plugin "{ref.name}" does not extend the {point} extension point')
                out.append((p, ref.weight))
            return out

        self.pre_filters: list[PreFilterPlugin] = [p for p, _ in plugins("preFilter", PreFilterPlugin)]
        self.filters: list[FilterPlugin] = [p for p, _ in plugins("filter", FilterPlugin)]
        self.static_filters = [f for f in self.filters if f.static]
        self.dynamic_filters = [f for f in self.filters if not f.static]
        self.post_filters: list[PostFilterPlugin] = [p for p, _ in plugins("postFilter", PostFilterPlugin)]
        self.pre_scores: list[PreScorePlugin] = [p for p, _ in plugins("preScore", PreScorePlugin)]
        self.scorers: list[tuple[ScorePlugin, float]] = plugins("score", ScorePlugin)
        self.pre_binds: list[PreBindPlugin] = [p for p, _ in plugins("preBind", PreBindPlugin)]
        self.binders: list[BindPlugin] = [p for p, _ in plugins("bind", BindPlugin)]
        self.handle = handle
        self._binding: set[asyncio.Task] = set()     # asynchronous PreBinds in flight
        self.weights = {p.name: w for p, w in self.scorers}     # for the decision record

    def run_pre_filter(self, state: CycleState, pod: PodInfo, snapshot) -> Status:
        """SUCCESS, or the first plugin's failure (its plugin named)."""
        for p in self.pre_filters:
            st = p.pre_filter(state, pod, snapshot)
            if not st.ok:
                return st if st.plugin else Status(st.code, st.reasons, p.name)
        return SUCCESS

    def run_add_pod(self, state: CycleState, pod: PodInfo, rec, slot: int, snapshot) -> None:
        """PreFilter extensions: simulate `rec` added on `slot` (preemption)."""
        for p in self.pre_filters:
            p.add_pod(state, pod, rec, slot, snapshot)

    def run_remove_pod(self, state: CycleState, pod: PodInfo, rec, slot: int, snapshot) -> None:
        for p in self.pre_filters:
            p.remove_pod(state, pod, rec, slot, snapshot)

    def fits_on(self, state: CycleState, pod: PodInfo, snapshot, slot: int) -> bool:
        """Every filter passes `slot` under `state` (preemption's dry runs)."""
        return all(not f.filter(state, pod, snapshot).codes[slot] for f in self.filters)

    def run_post_filter(self, state: CycleState, pod: PodInfo, snapshot, result):
        """The first PostFilter plugin's answer that is not None."""
        for p in self.post_filters:
            out = p.post_filter(state, pod, snapshot, result)
            if out is not None:
                return out
        return None

    def run_pre_score(self, state: CycleState, pod: PodInfo, snapshot, idx: np.ndarray) -> Status:
        for p in self.pre_scores:
            st = p.pre_score(state, pod, snapshot, idx)
            if st.code == Code.SKIP:
                state.skip_score_plugins.add(p.name)
            elif not st.ok:
                return st if st.plugin else Status(st.code, st.reasons, p.name)
        return SUCCESS

    def run_score(self, state: CycleState, pod: PodInfo, snapshot, idx: np.ndarray):
        """(plugin names, weights, scores as plugins x candidates) of the
        plugins with a weight that did not skip, and the names of those that
        did (they score 0 everywhere, so they take no row)."""
        names, weights, rows, skipped = [], [], [], []
        skip = state.skip_score_plugins
        for p, w in self.scorers:
            if not w:
                continue
            if p.name in skip:
                skipped.append(p.name)
                continue
            rows.append(p.score(state, pod, snapshot, idx))
            names.append(p.name)
            weights.append(w)
        return names, weights, rows, skipped

    def run_bind(self, state: CycleState, pod: PodInfo, node: str, annotations: dict, ctx) -> Status:
        """PreBind plugins, then the first Bind plugin not answering SKIP. When a PreBind
        answers with an awaitable, the rest runs in a task and its failure is reported
        through the Binder's result callback (the scheduler un-assumes the pod)."""
        waiting = []
        for p in self.pre_binds:
            st = p.pre_bind(state, pod, node)
            if inspect.isawaitable(st):
                waiting.append((p, st))
            elif not st.ok:
                for _, aw in waiting:
                    aw.close()
                return st if st.plugin else Status(st.code, st.reasons, p.name)
        if not waiting:
            return self._bind(state, pod, node, annotations, ctx)
        t = asyncio.ensure_future(self._bind_later(waiting, state, pod, node, annotations, ctx))
        self._binding.add(t)
        t.add_done_callback(self._binding.discard)
        return SUCCESS

    async def _bind_later(self, waiting, state, pod: PodInfo, node: str, annotations: dict, ctx) -> None:
        st = SUCCESS
        for p, aw in waiting:
            got = await aw
            if st.ok and not got.ok:
                st = got if got.plugin else Status(got.code, got.reasons, p.name)
        if st.ok:
            st = self._bind(state, pod, node, annotations, ctx)
        if not st.ok:
            log.info("binding %s to %s: %s: %s", pod.key, node, st.plugin, st.message())
            self.handle.binder.on_result(BindItem(pod.namespace, pod.name, pod.uid, node, annotations, ctx),
                                         errors.ApiError(f"{st.plugin or 'bind'}: {st.message()}"))

    def _bind(self, state: CycleState, pod: PodInfo, node: str, annotations: dict, ctx) -> Status:
        for p in self.binders:
            st = p.bind(state, pod, node, annotations, ctx)
            if st.code != Code.SKIP:
                return st
        return Status(Code.ERROR, ("no bind plugin bound the pod",))
