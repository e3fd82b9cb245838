"""The agent's Prometheus metrics (a registry of its own: nothing global, one per agent).

| metric | type | labels | meaning |
|---|---|---|---|
| meshready_node_ready | gauge | | 1 when the node is ready for interception, else 0 |
| meshready_modules | gauge | state | needed modules by state (loaded, builtin, loadable, absent, unknown) |
| meshready_module_loads_total | counter | result | modules the agent loaded (ok) or failed to load |
| meshready_probe_duration_seconds | histogram | | redirect probe durations |
| meshready_probe_success | gauge | | 1 when the last probe worked, 0 when it failed |
| meshready_checks_total | counter | trigger | checks run (start, timer, boot) |
| meshready_check_duration_seconds | histogram | | a whole check: assess, fix, probe |
| meshready_last_check_timestamp_seconds | gauge | | when the last check ended |
| meshready_api_errors_total | counter | operation | failed publications (publish: a sync), watches (watch), events not written (event) |
| meshready_api_refusals_total | counter | operation | requests the API refused for good (4xx but 408/409/429): not retried |
| meshready_published | gauge | | 1 when the Node shows the latest check |
| meshready_info | gauge | version, kernel, backend, profile | always 1 |
| process_* | | | the agent process (RSS, CPU, open files) |
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from meshready import __version__
from meshready.assess.report import State

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.node_ready = Gauge(
            "meshready_node_ready", "1 when the node is ready for interception", registry=r
        )
        self.modules = Gauge(
            "meshready_modules", "Needed kernel modules by state", ["state"], registry=r
        )
        self.loads = Counter(
            "meshready_module_loads", "Modules the agent loaded, by result", ["result"], registry=r
        )
        self.probe_duration = Histogram(
            "meshready_probe_duration_seconds",
            "Redirect probe duration",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.probe_success = Gauge(
            "meshready_probe_success", "1 when the last redirect probe worked", registry=r
        )
        self.checks = Counter(
            "meshready_checks", "Checks run, by what started them", ["trigger"], registry=r
        )
        self.check_duration = Histogram(
            "meshready_check_duration_seconds",
            "Duration of a check (assess, fix, probe)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.last_check = Gauge(
            "meshready_last_check_timestamp_seconds", "When the last check ended", registry=r
        )
        self.api_errors = Counter(
            "meshready_api_errors", "Failed Kubernetes API requests", ["operation"], registry=r
        )
        self.api_refusals = Counter(
            "meshready_api_refusals",
            "API requests refused for good (not retried until the next check)",
            ["operation"],
            registry=r,
        )
        self.published = Gauge(
            "meshready_published", "1 when the Node shows the latest check", registry=r
        )
        self.info = Gauge(
            "meshready_info",
            "Agent and node facts",
            ["version", "kernel", "backend", "profile"],
            registry=r,
        )
        ProcessCollector(registry=r)
        for state in State:
            self.modules.labels(state=state.value).set(0)
        for result in ("ok", "failed"):
            self.loads.labels(result=result)
        for trigger in ("start", "timer", "boot"):
            self.checks.labels(trigger=trigger)
        for operation in ("publish", "watch", "event"):
            self.api_errors.labels(operation=operation)
        for operation in ("publish", "watch"):
            self.api_refusals.labels(operation=operation)

    def set_info(self, kernel: str | None, backend: str | None, profile: str | None) -> None:
        self.info.clear()
        self.info.labels(
            version=__version__, kernel=kernel or "", backend=backend or "", profile=profile or ""
        ).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
