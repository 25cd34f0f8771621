"""Prometheus metrics of one gateway process (``GET /metrics``)."""
from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (re-exported)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("complaint_gateway_received_total", "Messages received, per channel.", ["channel"], registry=r)
        self.registered = Counter(
            "complaint_gateway_registered_total", "Messages registered, per channel and status (new, follow_up, repeat, automatic).",
            ["channel", "status"], registry=r)
        self.duplicates = Counter("complaint_gateway_duplicate_total", "Redeliveries answered with an earlier receipt.", ["channel"], registry=r)
        self.failed = Counter(
            "complaint_gateway_failed_total", "Messages not registered: dead_letter (kept for replay) or temporary (door told to retry).",
            ["channel", "reason"], registry=r)
        self.rejected = Counter(
            "complaint_gateway_rejected_total", "Requests refused at the door: forged, malformed, too large, rate limited ...",
            ["channel", "reason"], registry=r)
        self.acknowledged = Counter(
            "complaint_gateway_acknowledgements_total", "Acknowledgements to customers, sent or failed.", ["channel", "result"], registry=r)
        self.pull_failures = Counter("complaint_gateway_pull_failures_total", "Failed pull cycles (reconnects).", ["channel"], registry=r)
        self.inbox_logins = Counter(
            "complaint_gateway_inbox_logins_total", "Logins to the operators' inbox: ok, failed, locked (refused unchecked), "
            "unavailable (the registry could not count attempts).", ["result"], registry=r)
        self.submit_seconds = Histogram(
            "complaint_gateway_submit_seconds", "Time from Inbound to Receipt (store, normalise, register).",
            ["channel"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
        self.queue_length = Gauge("complaint_gateway_queue_length", "Events in the registry queue.", registry=r)
        self.dead_letters = Gauge("complaint_gateway_dead_letters", "Dead letters not yet replayed.", registry=r)
        self.registrations_pending = Gauge(
            "complaint_gateway_registrations_pending", "Registrations not closed, per the deadline that matters for each now "
            "(the first answer's while open, then the nearest other).", ["deadline"], registry=r)
        self.registrations_overdue = Gauge(
            "complaint_gateway_registrations_overdue", "Registrations not closed whose deadline that matters now has passed, "
            "per deadline.", ["deadline"], registry=r)
        self.registrations_due_soon = Gauge(
            "complaint_gateway_registrations_due_soon", "Registrations not closed whose deadline that matters now passes "
            "within registry.due_soon_minutes, per deadline.", ["deadline"], registry=r)
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """``metric.labels(*labels)``, found once per metric and label values, then by one
        dictionary look-up (for the counters every message touches)."""
        key = (metric, *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def set_registrations_due(self, due: dict[str, dict[str, int]]) -> None:
        """The gauges of deadlines from ``Registry.registrations_due``: a deadline no
        registration waits for any more is left out, not kept at its last value."""
        gauges = {"pending": self.registrations_pending, "overdue": self.registrations_overdue,
                  "due_soon": self.registrations_due_soon}
        for gauge in gauges.values():
            gauge.clear()
        for name, counts in due.items():
            for key, gauge in gauges.items():
                gauge.labels(name).set(counts[key])

    def render(self) -> bytes:
        return generate_latest(self.registry)
