"""Prometheus metrics of the server (prometheus_client, one registry per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hulumed_requests", "Chat completion requests by HTTP status", ["status"], registry=self.registry
        )
        self.errors = Counter("hulumed_errors", "Failed requests by error code", ["code"], registry=self.registry)
        self.queue_depth = Gauge("hulumed_queue_depth", "Requests waiting for the model", registry=self.registry)
        self.in_flight = Gauge("hulumed_in_flight", "Requests admitted and not finished", registry=self.registry)
        self.prompt_tokens = Counter("hulumed_prompt_tokens", "Prompt tokens processed", registry=self.registry)
        self.visual_tokens = Counter("hulumed_visual_tokens", "Visual tokens in prompts", registry=self.registry)
        self.completion_tokens = Counter("hulumed_completion_tokens", "Tokens generated", registry=self.registry)
        self.batch_size = Histogram(
            "hulumed_batch_size", "Requests per engine batch", buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry
        )
        self.latency = Histogram(
            "hulumed_request_latency_seconds", "Time from request to last byte",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
