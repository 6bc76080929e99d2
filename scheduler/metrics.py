"""Prometheus metrics of one scheduler instance (own registry, so two
in-process instances in tests do not collide)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.attempts = Counter("kctl_scheduler_schedule_attempts", "Scheduling attempts by result",
                                ["result"], registry=self.registry)
        self.e2e = Histogram("kctl_scheduler_e2e_scheduling_duration_seconds",
                             "From the pod entering the queue to its binding succeeding",
                             buckets=BUCKETS, registry=self.registry)
        self.pending = Gauge("kctl_scheduler_pending_pods", "Pods waiting, by queue",
                             ["queue"], registry=self.registry)
        self.bind_batch = Histogram("kctl_scheduler_bind_batch_size", "Bindings per BindBatch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.bind_duration = Histogram("kctl_scheduler_bind_batch_duration_seconds",
                                       "BindBatch round trip", buckets=BUCKETS, registry=self.registry)
        self.events_dropped = Counter("kctl_scheduler_events_dropped", "Events dropped (queue full)",
                                      registry=self.registry)
        for r in ("scheduled", "unschedulable", "error"):
            self.attempts.labels(r)

    def set_pending(self, lengths: dict[str, int]) -> None:
        for q, n in lengths.items():
            self.pending.labels(q).set(n)

    def value(self, name: str, **labels) -> float:
        v = self.registry.get_sample_value(name, labels)
        return v or 0.0
