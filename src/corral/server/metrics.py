"""Prometheus metrics: read from the service at scrape time, plus HTTP request counts.

Each app has its own registry, so two servers in one process (tests) do not
share counters.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from corral.hosted.service import SandboxService
from corral.server.limits import StreamSlots


class ServiceCollector:
    """Sandboxes by state, live ones, open streams, and the service's event counters."""

    def __init__(self, service: SandboxService, streams: StreamSlots):
        self.service = service
        self.streams = streams

    def collect(self):
        """Called by prometheus_client on each scrape."""
        states = GaugeMetricFamily("corral_sandboxes", "Recorded sandboxes by state", labels=["state"])
        for state, count in sorted(self.service.records.counts_by_state().items()):
            states.add_metric([state], count)
        yield states
        yield GaugeMetricFamily("corral_sandboxes_live", "Sandboxes running in this process",
                                value=len(self.service.live))
        yield GaugeMetricFamily("corral_streams_open", "Streamed responses in progress", value=self.streams.in_use)
        warm = self.service.warm
        yield GaugeMetricFamily("corral_warm_ready", "Sandboxes started ahead, ready to hand out",
                                value=warm.ready_count() if warm is not None else 0)
        handed = CounterMetricFamily("corral_warm_creates", "Creates served warm (hit) or cold (miss)",
                                     labels=["result"])
        handed.add_metric(["hit"], warm.hits if warm is not None else 0)
        handed.add_metric(["miss"], warm.misses if warm is not None else 0)
        yield handed
        events = CounterMetricFamily("corral_sandbox_events", "Lifecycle events since start", labels=["event"])
        for name, count in sorted(self.service.stats.items()):
            events.add_metric([name], count)
        yield events


class Metrics:
    """The registry of one app."""

    def __init__(self, service: SandboxService, streams: StreamSlots):
        self.registry = CollectorRegistry()
        self.registry.register(ServiceCollector(service, streams))
        self.requests = Counter("corral_http_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("corral_http_request_seconds", "Time to answer (to the first byte for streams)",
                                 ["method", "route"], registry=self.registry)


class RequestMetrics:
    """ASGI middleware counting answered HTTP requests by method, route and status, and timing them."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def observed_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
