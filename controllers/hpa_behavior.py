"""How far and how fast the HPA may move (horizontal.go's normalizeDesiredReplicas
and normalizeDesiredReplicasWithBehaviors).

Per HPA key, ``Normalizer`` remembers its recent recommendations and its
scale events (in memory, as Kubernetes' controller does; a restart forgets
them):

* without ``spec.behavior``: the highest recommendation of the downscale
  stabilization window (300 s) wins; then min/maxReplicas and a scale-up
  limit of max(2 * current, 4);
* with it: the stabilization window of the direction (scaleUp: the lowest
  recent recommendation, scaleDown: the highest), then the rate limit of the
  policies (Pods / Percent per periodSeconds, counted from the replicas at
  the start of each period, i.e. current minus the changes made within it;
  selectPolicy Max, Min or Disabled), then min/maxReplicas.

Each step reports the (reason, message) Kubernetes puts in the AbleToScale
and ScalingLimited conditions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from machinery import defaults

DOWNSCALE_STABILIZATION_WINDOW = 300.0
SCALE_UP_LIMIT_FACTOR, SCALE_UP_LIMIT_MINIMUM = 2.0, 4

READY = ("ReadyForNewScale", "recommended size matches current size")
UP_STABILIZED = ("ScaleUpStabilized",
                 "recent recommendations were lower than current one, applying the lowest recent recommendation")
DOWN_STABILIZED = ("ScaleDownStabilized",
                   "recent recommendations were higher than current one, applying the highest recent recommendation")
IN_RANGE = ("DesiredWithinRange", "the desired count is within the acceptable range")
TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")
TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
UP_LIMIT = ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
DOWN_LIMIT = ("ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate")


@dataclass
class Outcome:
    replicas: int
    able: tuple[str, str]           # AbleToScale (True) reason, message
    limited: bool                   # ScalingLimited status
    limit: tuple[str, str]          # ScalingLimited reason, message


@dataclass
class _State:
    recommendations: list[tuple[float, int]] = field(default_factory=list)     # (time, replicas)
    up_events: list[tuple[float, int]] = field(default_factory=list)           # (time, change)
    down_events: list[tuple[float, int]] = field(default_factory=list)


def _changed_within(events, period: float, now: float) -> int:
    return sum(change for t, change in events if t > now - period)


def scale_up_limit(current: int, up_events, down_events, rules, now: float) -> int:
    """calculateScaleUpLimitWithScalingRules."""
    if rules.select_policy == "Disabled":
        return current
    pick, result = (min, math.inf) if rules.select_policy == "Min" else (max, -math.inf)
    for p in rules.policies:
        start = current - _changed_within(up_events, p.period_seconds, now) + \
            _changed_within(down_events, p.period_seconds, now)
        proposed = start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100))
        result = pick(result, proposed)
    return int(result)


def scale_down_limit(current: int, up_events, down_events, rules, now: float) -> int:
    """calculateScaleDownLimitWithBehaviors."""
    if rules.select_policy == "Disabled":
        return current
    pick, result = (max, -math.inf) if rules.select_policy == "Min" else (min, math.inf)
    for p in rules.policies:
        start = current - _changed_within(up_events, p.period_seconds, now) + \
            _changed_within(down_events, p.period_seconds, now)
        proposed = start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100))
        result = pick(result, proposed)
    return int(result)


class Normalizer:
    def __init__(self, downscale_window: float = DOWNSCALE_STABILIZATION_WINDOW) -> None:
        self.downscale_window = downscale_window
        self.state: dict[str, _State] = {}

    def forget(self, key: str) -> None:
        self.state.pop(key, None)

    def _remember(self, st: _State, desired: int, now: float, obsolete_before: float) -> None:
        for i, (t, _) in enumerate(st.recommendations):
            if t < obsolete_before:
                st.recommendations[i] = (now, desired)
                return
        st.recommendations.append((now, desired))

    def normalize(self, key: str, hpa, current: int, desired: int, now: float) -> Outcome:
        st = self.state.setdefault(key, _State())
        lo, hi = hpa.spec.min_replicas if hpa.spec.HasField("min_replicas") else 1, hpa.spec.max_replicas
        if not hpa.spec.HasField("behavior"):
            cutoff = now - self.downscale_window
            stabilized = max([desired] + [r for t, r in st.recommendations if t >= cutoff])
            self._remember(st, desired, now, cutoff)
            able = DOWN_STABILIZED if stabilized != desired else READY
            up_limit = max(int(SCALE_UP_LIMIT_FACTOR * current), SCALE_UP_LIMIT_MINIMUM)
            top, top_reason = (up_limit, UP_LIMIT) if hi > up_limit else (hi, TOO_MANY)
            if stabilized < lo:
                out, reason = lo, TOO_FEW
            elif stabilized > top:
                out, reason = top, top_reason
            else:
                out, reason = stabilized, IN_RANGE
            return Outcome(out, able, out != stabilized, reason)
        up = defaults.hpa_scale_up_rules(hpa.spec.behavior.scale_up if hpa.spec.behavior.HasField("scale_up") else None)
        down = defaults.hpa_scale_down_rules(hpa.spec.behavior.scale_down
                                             if hpa.spec.behavior.HasField("scale_down") else None)
        if desired >= current:
            window, better, able = up.stabilization_window_seconds, min, UP_STABILIZED
        else:
            window, better, able = down.stabilization_window_seconds, max, DOWN_STABILIZED
        obsolete = now - max(up.stabilization_window_seconds, down.stabilization_window_seconds)
        stabilized = desired
        for t, r in st.recommendations:
            if t > now - window:
                stabilized = better(r, stabilized)
        self._remember(st, desired, now, obsolete)
        if stabilized == desired:
            able = READY
        out, reason = stabilized, IN_RANGE
        if stabilized > current:
            limit = max(scale_up_limit(current, st.up_events, st.down_events, up, now), current)
            top, top_reason = (limit, UP_LIMIT) if hi > limit else (hi, TOO_MANY)
            if stabilized > top:
                out, reason = top, top_reason
        elif stabilized < current:
            limit = min(scale_down_limit(current, st.up_events, st.down_events, down, now), current)
            bottom, bottom_reason = (limit, DOWN_LIMIT) if lo < limit else (lo, TOO_FEW)
            if stabilized < bottom:
                out, reason = bottom, bottom_reason
        return Outcome(out, able, out != stabilized, reason)

    def record_scale(self, key: str, hpa, previous: int, new: int, now: float) -> None:
        """storeScaleEvent: remember a rescale for the policies' periods (behavior only)."""
        if not hpa.spec.HasField("behavior"):
            return
        b = hpa.spec.behavior
        longest = max([p.period_seconds for r in (b.scale_up, b.scale_down) for p in r.policies] or [0])
        st = self.state.setdefault(key, _State())
        events = st.up_events if new > previous else st.down_events
        events[:] = [(t, c) for t, c in events if t > now - longest]
        events.append((now, abs(new - previous)))
