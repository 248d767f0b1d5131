"""Logging (structlog, one JSON object per line) and the Prometheus metrics every consumer shares.

Bind ids with `structlog.contextvars.bound_contextvars(event_id=..., instruction_id=...)` and every
line logged inside carries them.
"""

from __future__ import annotations

import logging
import sys

import structlog
from prometheus_client import Counter, Gauge, Histogram


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stdout; the stdlib loggers (aiokafka, uvicorn) go through the same pipe."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.EventRenamer("message"),
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)


MESSAGES_CONSUMED = Counter(
    "nexwatt_messages_consumed_total", "Records handled by a consumer", ["group", "topic"]
)
DEAD_LETTERS = Counter(
    "nexwatt_dead_letters_total", "Records sent to the dead-letter topic", ["group", "topic"]
)
HANDLER_RETRIES = Counter(
    "nexwatt_handler_retries_total", "Batches retried after a handler error", ["group"]
)
BATCH_SECONDS = Histogram(
    "nexwatt_batch_seconds", "Time to handle and commit one batch [s]", ["group"]
)
CONSUMER_LAG = Gauge(
    "nexwatt_consumer_lag", "Records behind the partition's end", ["group", "topic", "partition"]
)
MESSAGES_PRODUCED = Counter("nexwatt_messages_produced_total", "Records sent", ["topic"])
