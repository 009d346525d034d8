"""asm's metrics, counted: every worker adds to one Redis hash (asm.observe.prometheus exposes it).

Workers come and go and run on many machines, so the counts live in Redis, not in a process.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis

from asm.keys import METRICS

log = logging.getLogger(__name__)
SEPARATOR = "|"


def field(name: str, **labels: str) -> str:
    """The hash field of one series: `name|key=value|key=value`, labels sorted."""
    return SEPARATOR.join([name, *(f"{key}={value}" for key, value in sorted(labels.items()))])


def parse_field(raw: str) -> tuple[str, dict[str, str]]:
    name, *pairs = raw.split(SEPARATOR)
    return name, dict(pair.split("=", 1) for pair in pairs)


class Recorder:
    """Adds to the fleet's counters; every call is one Redis round trip (or none, in a pipeline)."""

    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.client = client

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        try:
            self.client.hincrbyfloat(METRICS, field(name, **labels), amount)
        except redis.RedisError as problem:  # a metric is never worth failing a run for
            log.warning("could not record metric %s: %s", name, problem)

    def charged(self, repo: str, usd: float, tokens: Mapping[str, int]) -> None:
        """Add one billed model call to the spend and token counters (`tokens`: kind -> count)."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hincrbyfloat(METRICS, field("asm_spend_usd_total", repo=repo), usd)
            for kind, count in tokens.items():
                pipe.hincrbyfloat(METRICS, field("asm_tokens_total", kind=kind), count)
            pipe.execute()
        except redis.RedisError as problem:
            log.warning("could not record a model call's spend: %s", problem)

    def observe_stages(self, stage_seconds: dict[str, float]) -> None:
        """Add one run's time per stage to the stage-duration summaries."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for stage, seconds in stage_seconds.items():
                pipe.hincrbyfloat(METRICS, field("asm_stage_duration_seconds_sum", stage=stage), seconds)
                pipe.hincrbyfloat(METRICS, field("asm_stage_duration_seconds_count", stage=stage), 1)
            pipe.execute()
        except redis.RedisError as problem:
            log.warning("could not record stage durations: %s", problem)
