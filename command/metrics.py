"""Prometheus metrics, one registry per app (so tests can run several apps)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(slots=True)
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    alarms_stored: Counter = field(init=False)
    alarms_duplicate: Counter = field(init=False)
    dead_letters: Counter = field(init=False)
    incidents_opened: Counter = field(init=False)
    batches: Counter = field(init=False)
    batch_size: Histogram = field(init=False)
    commit_seconds: Histogram = field(init=False)
    store_retries: Counter = field(init=False)
    qos0_dropped: Gauge = field(init=False)
    consoles: Gauge = field(init=False)
    console_overflows: Gauge = field(init=False)
    unit_orders_sent: Counter = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.alarms_stored = Counter(
            "emergency_alarms_stored", "Alarms stored (new, not duplicates)", registry=r
        )
        self.alarms_duplicate = Counter(
            "emergency_alarms_duplicate", "Redelivered alarms recognised and dropped", registry=r
        )
        self.dead_letters = Counter(
            "emergency_dead_letters", "Messages rejected to the dead-letter table", ["source"], registry=r
        )
        self.incidents_opened = Counter("emergency_incidents_opened", "Incidents opened", registry=r)
        self.batches = Counter("emergency_ingest_batches", "Ingest transactions committed", registry=r)
        self.batch_size = Histogram(
            "emergency_ingest_batch_size",
            "Messages per ingest transaction",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "emergency_ingest_commit_seconds",
            "Time to store and commit one batch",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2),
            registry=r,
        )
        self.store_retries = Counter(
            "emergency_ingest_retries", "Batches retried after a database error", registry=r
        )
        self.qos0_dropped = Gauge(
            "emergency_qos0_dropped", "QoS 0 messages dropped on a full queue", registry=r
        )
        self.consoles = Gauge("emergency_consoles", "Connected consoles", registry=r)
        self.console_overflows = Gauge(
            "emergency_console_overflows", "Consoles closed for falling behind", registry=r
        )
        # Exposed as emergency_unit_orders_sent_total (prometheus_client adds _total).
        self.unit_orders_sent = Counter(
            "emergency_unit_orders_sent", "Unit outbox rows the broker acknowledged", registry=r
        )
