"""DefaultPreemption (PostFilter): make room for a pod no node fits by
evicting lower-priority pods, after kube-scheduler's defaultpreemption
plugin and framework/preemption's Evaluator.

1. Eligibility (PodEligibleToPreemptOthers): a pod with preemptionPolicy
   Never never preempts; a pod already nominated to a node where
   lower-priority pods are still terminating waits for them (its
   nomination is kept) instead of preempting again.
2. Candidates: nodes whose first failing filter was Unschedulable
   (resources, spread, anti-affinity — not unresolvable reasons such as
   taints or node affinity), at most max(10 % of nodes, 100) found.
3. Victims per node (selectVictimsOnNode): remove every lower-priority pod
   (resources released on the slot, PreFilter state adjusted through the
   RemovePod extensions on a cloned CycleState); if the pod then fits,
   reprieve the victims one by one, most important first (higher priority,
   then earlier start), PDB-violating ones first, keeping each whose return
   still lets the pod fit.
4. The node (pickOneNodeForPreemption): fewest PodDisruptionBudget
   violations, then the lowest highest-victim priority, the smallest sum of
   victim priorities, the fewest victims, the latest start among the
   highest-priority victims; the first such node otherwise.
5. Acting (through the scheduler's evictor, Handle.evictor): victims are
   deleted gracefully (their terminationGracePeriodSeconds) with a
   Preempted event; the pod gets status.nominatedNodeName and a
   reservation on the node in the cache; it is decided again when the
   victims are gone (their deletion moves the unschedulable queue).

PodDisruptionBudgets (when the kind is served: the scheduler then runs an
informer for them and hands its list through Handle.pdbs) only weigh in
the choice, as in kube-scheduler: victims whose eviction would take a
budget below zero are reprieved first and counted as violations; the
deletion itself does not go through the Eviction API.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from machinery import selectors
from scheduler.framework import Code, PodInfo, PostFilterPlugin

MIN_CANDIDATE_NODES_PERCENTAGE = 10
MIN_CANDIDATE_NODES_ABSOLUTE = 100
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."


def priority_of(pod) -> int:
    return pod.spec.priority if pod.spec.HasField("priority") else 0


def start_of(pod) -> float:
    t = pod.status.start_time if pod.status.HasField("start_time") else pod.metadata.creation_timestamp
    return t.seconds + t.nanos / 1e9


def more_important(rec) -> tuple:
    """Sort key: higher priority first, then the earlier start (MoreImportantPod)."""
    return (-priority_of(rec.pod), start_of(rec.pod))


def pdb_violations(victims: list, pdbs) -> set[str]:
    """Uids of victims whose eviction would take a PodDisruptionBudget below
    zero, counted in the given order (kube-scheduler's
    filterPodsWithPDBViolation): a PDB in the victim's namespace whose
    selector (nil or empty selects nothing here) matches it spends one of
    status.disruptionsAllowed, unless the pod is already in
    status.disruptedPods."""
    allowed = [pdb.status.disruptions_allowed for pdb in pdbs]
    out = set()
    for r in victims:
        md = r.pod.metadata
        for i, pdb in enumerate(pdbs):
            sel = pdb.spec.selector
            if pdb.metadata.namespace != md.namespace or not pdb.spec.HasField("selector") or \
                    not (sel.match_labels or sel.match_expressions):
                continue
            if not selectors.from_proto(sel).matches(md.labels) or md.name in pdb.status.disrupted_pods:
                continue
            allowed[i] -= 1
            if allowed[i] < 0:
                out.add(r.uid)
    return out


@dataclass
class Candidate:
    node: str
    slot: int
    victims: list = field(default_factory=list)     # PodRecords, most important first
    violations: int = 0


@dataclass
class PostFilterResult:
    nominated: str | None
    victims: list = field(default_factory=list)
    message: str = ""

    def record(self) -> dict:
        return {"nominated": self.nominated, "message": self.message,
                "victims": [f"{r.pod.metadata.namespace}/{r.pod.metadata.name} (priority {priority_of(r.pod)})"
                            for r in self.victims]}


class DefaultPreemption(PostFilterPlugin):
    name = "DefaultPreemption"

    def __init__(self, framework=None, evictor=None, pdbs=None):
        self.framework = framework
        self.evictor = evictor
        self.pdbs = pdbs or (lambda: [])      # PodDisruptionBudgets (the scheduler's informer)

    @classmethod
    def new(cls, args: dict, handle) -> "DefaultPreemption":
        return cls(handle.framework, handle.evictor, handle.pdbs)

    def post_filter(self, state, pod: PodInfo, snapshot, result) -> PostFilterResult:
        if pod.pod.spec.preemption_policy == "Never":
            return PostFilterResult(None, message=NEVER)
        nominated = (self.evictor.nominated_node(pod) if self.evictor is not None
                     else pod.pod.status.nominated_node_name)
        if nominated and self._terminating_lesser(pod, snapshot, nominated):
            if self.evictor is not None:
                self.evictor.nominate(pod, nominated, [])
            return PostFilterResult(nominated, message=TERMINATING)
        candidates = self.candidates(state, pod, snapshot, result)
        if not candidates:
            return PostFilterResult(None, message=self._failure(snapshot, result))
        best = pick_one(candidates)
        if self.evictor is not None:
            self.evictor.nominate(pod, best.node, best.victims)
        return PostFilterResult(best.node, best.victims,
                                f"preempting {len(best.victims)} pod(s) on node {best.node}")

    @staticmethod
    def _terminating_lesser(pod: PodInfo, snapshot, node: str) -> bool:
        slot = snapshot.slot(node)
        if slot is None:
            return False
        return any(r.pod.metadata.HasField("deletion_timestamp") and priority_of(r.pod) < pod.priority
                   for r in snapshot.pods_on(slot))

    @staticmethod
    def _failure(snapshot, result) -> str:
        """The 'preemption: 0/N nodes are available: ...' part of FitError."""
        codes = result.fail_codes if result.fail_codes is not None else np.zeros(0)
        valid = snapshot.valid()
        helpful = int((valid & (codes[: len(valid)] == Code.UNSCHEDULABLE)).sum()) if len(codes) else 0
        counts = {NO_VICTIMS: helpful, NOT_HELPFUL: len(snapshot) - helpful}
        parts = sorted(f"{n} {r}" for r, n in counts.items() if n)
        return f"0/{len(snapshot)} nodes are available: {', '.join(parts)}."

    def candidates(self, state, pod: PodInfo, snapshot, result) -> list[Candidate]:
        if result.fail_codes is None:
            return []
        n = len(snapshot)
        want = max(n * MIN_CANDIDATE_NODES_PERCENTAGE // 100, MIN_CANDIDATE_NODES_ABSOLUTE)
        slots = np.flatnonzero(snapshot.valid() & (result.fail_codes[: snapshot.num_slots] == Code.UNSCHEDULABLE))
        out = []
        for slot in slots.tolist():
            c = self.select_victims(state, pod, snapshot, int(slot))
            if c is not None:
                out.append(c)
                if len(out) >= want:
                    break
        return out

    def select_victims(self, state, pod: PodInfo, snapshot, slot: int) -> Candidate | None:
        """kube-scheduler's SelectVictimsOnNode on a cloned state."""
        lesser = [r for r in snapshot.pods_on(slot) if priority_of(r.pod) < pod.priority
                  and not r.nominated]
        if not lesser:
            return None
        fw = self.framework
        st = state.clone()
        removed: dict[str, object] = {}        # uid -> record released on the slot
        try:
            for r in lesser:
                snapshot.simulate(r, -1)
                removed[r.uid] = r
                fw.run_remove_pod(st, pod, r, slot, snapshot)
            if not fw.fits_on(st, pod, snapshot, slot):
                return None
            lesser.sort(key=more_important)
            protected = pdb_violations(lesser, self.pdbs())
            victims, violations = [], 0

            def reprieve(r) -> bool:
                snapshot.simulate(r, 1)
                del removed[r.uid]
                fw.run_add_pod(st, pod, r, slot, snapshot)
                if fw.fits_on(st, pod, snapshot, slot):
                    return True
                snapshot.simulate(r, -1)
                removed[r.uid] = r
                fw.run_remove_pod(st, pod, r, slot, snapshot)
                return False

            for r in [r for r in lesser if r.uid in protected] + [r for r in lesser if r.uid not in protected]:
                if not reprieve(r):
                    victims.append(r)
                    violations += r.uid in protected
            victims.sort(key=more_important)
            return Candidate(snapshot.names[slot], slot, victims, violations)
        finally:
            for r in removed.values():
                snapshot.simulate(r, 1)


def pick_one(candidates: list[Candidate]) -> Candidate:
    """kube-scheduler's pickOneNodeForPreemption (criteria in the module docstring)."""
    def key(c: Candidate):
        if not c.victims:
            return (c.violations, float("-inf"), 0, 0, 0.0)
        top = priority_of(c.victims[0].pod)
        earliest_top = min(start_of(r.pod) for r in c.victims if priority_of(r.pod) == top)
        total = sum(priority_of(r.pod) + 2**31 for r in c.victims)
        return (c.violations, top, total, len(c.victims), -earliest_top)
    return min(candidates, key=key)
