"""asm's Prometheus exposition: a collector reading the fleet's counters and state from Redis.

`celery -A asm flower` registers it in the process-wide registry, so Flower's `/metrics` serves
asm's series beside Flower's own, in one exposition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from asm.config import Settings
from asm.keys import METRICS
from asm.observe.fleet_state import FleetState, read_fleet_state
from asm.observe.metrics import parse_field

COUNTERS = {
    "asm_issues_total": ("Deliveries of asm.process_issue, by how they ended", ["outcome"]),
    "asm_spend_usd_total": ("USD spent on the model, by repository", ["repo"]),
    "asm_tokens_total": ("Model tokens billed, by kind", ["kind"]),
    "asm_claim_conflicts_total": ("Deliveries that found the issue claimed by another worker", []),
    "asm_retries_total": ("Retried calls, by service (model, github)", ["kind"]),
}


class FleetCollector(Collector):
    """Reads Redis at scrape time: counters from every worker, and the fleet's state now."""

    def __init__(self, settings: Callable[[], Settings], client: Callable[[], redis.Redis[bytes]]) -> None:
        self.settings = settings
        self.client = client

    def collect(self) -> Iterator[Metric]:
        client = self.client()
        raw = {key.decode(): float(value) for key, value in client.hgetall(METRICS).items()}
        families = {name: CounterMetricFamily(name.removesuffix("_total"), text, labels=labels)
                    for name, (text, labels) in COUNTERS.items()}
        stages: dict[str, dict[str, float]] = {}
        for key, value in raw.items():
            name, labels = parse_field(key)
            if name in families:
                families[name].add_metric([labels[label] for label in COUNTERS[name][1]], value)
            elif name.startswith("asm_stage_duration_seconds_"):
                stages.setdefault(labels["stage"], {})[name.rsplit("_", 1)[1]] = value
        yield from families.values()
        summary = SummaryMetricFamily("asm_stage_duration_seconds", "Time spent in each workflow stage",
                                      labels=["stage"])
        for stage, parts in sorted(stages.items()):
            # A whole number (HINCRBYFLOAT by 1 each time); the exposition prints it as a float either way.
            summary.add_metric([stage], count_value=int(parts.get("count", 0)), sum_value=parts.get("sum", 0.0))
        yield summary
        yield from fleet_gauges(read_fleet_state(client, self.settings()))


def fleet_gauges(state: FleetState) -> Iterator[GaugeMetricFamily]:
    """The fleet's state now, as gauges."""
    workers = GaugeMetricFamily("asm_workers", "Worker slots, by state", labels=["state"])
    for name in ("idle", "working", "stopped", "lost"):
        workers.add_metric([name], state.workers_in(name))
    yield workers
    yield GaugeMetricFamily("asm_queued_issues", "Issues waiting in the queue", value=len(state.queued))
    yield GaugeMetricFamily("asm_running_issues", "Issues being worked on", value=len(state.running))
    yield GaugeMetricFamily("asm_paused", "1 while the fleet takes no new issues", value=int(bool(state.paused)))
    today = GaugeMetricFamily("asm_spend_today_usd", "USD spent today (UTC), by scope", labels=["scope"])
    today.add_metric(["fleet"], state.spend.fleet_usd)
    for repo, usd in state.spend.per_repo_usd.items():
        today.add_metric([repo], usd)
    yield today
    caps = GaugeMetricFamily("asm_spend_cap_usd", "The spend caps, USD", labels=["cap"])
    for cap, usd in state.spend.caps.items():
        caps.add_metric([cap], usd)
    yield caps
    left = GaugeMetricFamily("asm_github_rate_limit_remaining", "GitHub's rate-limit budget left, by resource, as the "
                             "scan last saw it", labels=["resource"])
    for resource, budget in sorted(state.rate_limits.items()):
        left.add_metric([resource], budget.remaining if budget.current(state.at) else budget.limit)
    yield left


_installed: FleetCollector | None = None


def install(settings: Callable[[], Settings], client: Callable[[], redis.Redis[bytes]],
            registry: CollectorRegistry = REGISTRY) -> FleetCollector:
    """Register the collector once per process (Flower's /metrics serves the default registry)."""
    global _installed
    if _installed is None:
        _installed = FleetCollector(settings, client)
        registry.register(_installed)
    return _installed
