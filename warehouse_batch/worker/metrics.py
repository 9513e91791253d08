"""`GET /metrics`: the worker's figures in the Prometheus text format (prometheus_client).

A custom collector reads the latest snapshot at scrape time, so the counters are the warehouse's
own totals (they survive restarts) and nothing is counted twice across processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from warehouse_batch.worker.service import Worker

PREFIX = "warehouse_batch_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class WorkerCollector(Collector):
    def __init__(self, worker: Worker):
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        snap, stats = self.worker.snapshot, self.worker.stats
        batches = GaugeMetricFamily(PREFIX + "batches", "Shards (one provider batch each) by state.", labels=["state"])
        for state, count in sorted(snap.batches_by_state.items()):
            batches.add_metric([state], count)
        yield batches
        totals = snap.totals
        for name, key, text in (
            ("requests_sent", "requests_sent", "Requests sent to the provider in batches."),
            ("requests_answered", "requests_answered", "Requests answered successfully."),
            ("requests_failed", "requests_failed", "Requests that ended without an answer (failed, expired, cancelled)."),
            ("spend_usd", "spend_usd", "US dollars the answers cost (batch prices)."),
        ):
            yield CounterMetricFamily(PREFIX + name, text, value=totals.get(key, 0.0))
        yield GaugeMetricFamily(PREFIX + "spend_today_usd", "US dollars spent today (UTC).",
                                value=totals.get("spend_today_usd", 0.0))
        jobs = GaugeMetricFamily(PREFIX + "job_rows", "Rows of each job by status.", labels=["job", "status"])
        for job in snap.jobs:
            for status in ("completed", "failed", "pending", "expired", "cancelled"):
                jobs.add_metric([job["job_name"], status], job[status] or 0)
        yield jobs
        yield CounterMetricFamily(PREFIX + "provider_errors", "Provider calls that failed transiently (this process).",
                                  value=stats.provider_errors)
        hooks = CounterMetricFamily(PREFIX + "webhooks", "Webhooks received, by outcome (this process).",
                                    labels=["outcome"])
        for outcome, count in sorted(stats.webhooks.items()):
            hooks.add_metric([outcome], count)
        yield hooks
        if stats.last_successful_poll is not None:
            yield GaugeMetricFamily(PREFIX + "last_successful_poll_timestamp_seconds",
                                    "When the provider was last polled without a transient failure (epoch seconds).",
                                    value=stats.last_successful_poll)
        yield GaugeMetricFamily(PREFIX + "snapshot_timestamp_seconds",
                                "When the figures above were read from the warehouse (epoch seconds).",
                                value=snap.taken_at)


def render(worker: Worker) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(worker))
    return generate_latest(registry)
