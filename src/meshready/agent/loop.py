"""The agent: check the node, tell the cluster, wait, again.

Three threads besides the health server, so that the API never holds up node-local work:

- the main thread runs checks (``NodeWork.check``: assess, fix, probe) at start, on a jittered
  timer, and when the node's boot ID changes; it hands each result to the publisher and goes on;
- the publisher thread writes the latest result on the Node (``cluster.node.NodePublisher``),
  retrying with exponential backoff and jitter while the API fails; a newer result replaces an
  unsent one;
- the watcher thread watches the agent's own Node and wakes the main thread when
  ``status.nodeInfo.bootID`` changes (the agent also compares the local boot ID on each timer).

SIGTERM or SIGINT: the current step finishes, nothing more is written, the process exits 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from meshready.agent.backoff import Backoff, jittered
from meshready.agent.metrics import Metrics
from meshready.agent.server import Health, HealthServer
from meshready.agent.work import CheckResult, NodeWork
from meshready.assess.report import State
from meshready.boundedio import read_text_or_none
from meshready.cluster.names import METRICS_PORT
from meshready.cluster.published import Publication, check_node_name

if TYPE_CHECKING:
    # lightkube (and the API client) load in the publisher thread, while the first check runs.
    from lightkube import Client

    from meshready.cluster.node import NodePublisher

PublisherFactory = Callable[[], "NodePublisher"]

log = logging.getLogger("meshready.agent")

MAX_WAIT_SLICE = 5.0  # the main loop marks progress at least this often while it waits


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    interval: float = 300.0
    jitter: float = 0.2
    once: bool = False
    once_timeout: float = 30.0  # --once: how long to keep trying to publish
    watch: bool = True
    metrics_addr: tuple[str, int] | None = ("0.0.0.0", METRICS_PORT)
    boot_id_file: Path | None = Path("/proc/sys/kernel/random/boot_id")
    retry_base: float = 0.5
    retry_cap: float = 60.0


def _word(ready: bool | None) -> str:
    return "unknown" if ready is None else ("ready" if ready else "not ready")


class PublishWorker:
    """Publishes the latest Publication on the Node, retrying with backoff until it is written.

    The NodePublisher (API client included) is made by FACTORY in this thread, so that importing
    lightkube and setting up TLS overlap the first check. A factory error is fatal (bad
    configuration, not an outage): it is kept in ``fatal`` and ON_FATAL is called.
    """

    def __init__(
        self,
        factory: PublisherFactory,
        metrics: Metrics,
        stop: threading.Event,
        backoff: Backoff,
        on_ready: Callable[[NodePublisher], None] = lambda _: None,
        on_fatal: Callable[[BaseException], None] = lambda _: None,
        on_published: Callable[[Publication], None] = lambda _: None,
    ) -> None:
        self.factory = factory
        self.on_published = on_published
        self.publisher: NodePublisher | None = None
        self.metrics = metrics
        self.stop = stop
        self.backoff = backoff
        self.on_ready = on_ready
        self.on_fatal = on_fatal
        self.fatal: BaseException | None = None
        self._cond = threading.Condition()
        self._pending: Publication | None = None
        self._version = 0
        self._published = 0
        self._refused = 0  # the latest version the API refused for good: not retried
        self.last_error: str | None = None
        self.syncs = 0
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self) -> PublishWorker:
        self._thread.start()
        return self

    def submit(self, pub: Publication) -> int:
        with self._cond:
            old = self._pending
            if old is not None and self._published < self._version and old.events:
                # the newer state replaces an unsent one; what happened in between still counts
                merged = tuple(dict.fromkeys((*old.events, *pub.events)))
                pub = dataclasses.replace(pub, events=merged)
            self._pending = pub
            self._version += 1
            self.metrics.published.set(0)
            self._cond.notify_all()
            return self._version

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_published(self, version: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (
                self._published < version
                and self._refused < version
                and not self.stop.is_set()
                and self.fatal is None
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
            return self._published >= version

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self.publisher = self.factory()
        except BaseException as exc:  # any: kept in `fatal`, raised again by the main thread
            self.fatal = exc
            log.error("cannot publish: %s", exc)
            self.on_fatal(exc)
            with self._cond:
                self._cond.notify_all()
            return
        self.on_ready(self.publisher)
        self._loop(self.publisher)

    def _loop(self, publisher: NodePublisher) -> None:
        from meshready.cluster.errors import describe, is_api_failure, is_permanent, retry_after

        retry_at = 0.0
        while not self.stop.is_set():
            with self._cond:
                while not self.stop.is_set() and (
                    self._pending is None
                    or self._published >= self._version
                    or self._refused >= self._version
                    or time.monotonic() < retry_at
                ):
                    wait = None if retry_at <= time.monotonic() else retry_at - time.monotonic()
                    self._cond.wait(min(wait, 1.0) if wait is not None else 1.0)
                if self.stop.is_set():
                    return
                pub, version = self._pending, self._version
            assert pub is not None
            try:
                outcome = publisher.sync(pub)
            except Exception as exc:  # any: the publisher thread must outlive a bug, and retry
                if not is_api_failure(exc):
                    log.exception("publishing failed unexpectedly")
                self.metrics.api_errors.labels(operation="publish").inc()
                self.last_error = describe(exc)
                if is_permanent(exc):
                    # The same request would be refused again (403 by RBAC or an admission
                    # policy, 404 Node deleted, 422 invalid): wait for the next check instead.
                    self.metrics.api_refusals.labels(operation="publish").inc()
                    log.error(
                        "publish refused by the API (%s); not retrying until the next check",
                        self.last_error,
                    )
                    with self._cond:
                        self._refused = max(self._refused, version)
                        self._cond.notify_all()
                    self.backoff.reset()
                    retry_at = 0.0
                    continue
                delay = self.backoff.next()
                asked = retry_after(exc)
                if asked is not None and asked > delay:
                    delay = asked  # the server said when: never sooner (429, 503)
                log.warning("publish failed (%s); retrying in %.1f s", self.last_error, delay)
                retry_at = time.monotonic() + delay
                continue
            self.syncs += 1
            for failure in outcome.events_failed:
                self.metrics.api_errors.labels(operation="event").inc()
                log.debug("event not written: %s", failure)
            self.backoff.reset()
            self.last_error = None
            retry_at = 0.0
            if outcome.wrote:
                log.info("published on node %s: %s", publisher.node_name, ", ".join(outcome.wrote))
            with self._cond:
                self._published = max(self._published, version)
                if self._published >= self._version:
                    self.metrics.published.set(1)
                self._cond.notify_all()
            self.on_published(pub)


class BootWatcher:
    """Watches the agent's own Node; calls ON_BOOT(new_id) when status.nodeInfo.bootID changes."""

    def __init__(
        self,
        client: Client,
        node_name: str,
        on_boot: Callable[[str], None],
        metrics: Metrics,
        stop: threading.Event,
        backoff: Backoff,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.on_boot = on_boot
        self.metrics = metrics
        self.stop = stop
        self.backoff = backoff
        self.boot_id: str | None = None
        self._thread = threading.Thread(target=self._run, name="boot-watcher", daemon=True)

    def start(self) -> BootWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        from lightkube.resources.core_v1 import Node

        from meshready.cluster.errors import describe, is_permanent, retry_after

        while not self.stop.is_set():
            try:
                for _, node in self.client.watch(
                    Node, fields={"metadata.name": self.node_name}, server_timeout=300
                ):
                    if self.stop.is_set():
                        return
                    self.backoff.reset()
                    info = node.status.nodeInfo if node.status else None
                    boot = info.bootID if info else None
                    if not boot:
                        continue
                    if self.boot_id is not None and boot != self.boot_id:
                        log.info("node %s rebooted (boot ID %s)", self.node_name, boot)
                        self.boot_id = boot
                        self.on_boot(boot)
                    self.boot_id = boot
            except Exception as exc:  # any: a bug must not end the watch for the agent's life
                if self.stop.is_set():
                    return
                self.metrics.api_errors.labels(operation="watch").inc()
                if is_permanent(exc):
                    # Not allowed to watch (or no such node): the timer's local boot ID check
                    # still notices a reboot; hammering the API would not help.
                    self.metrics.api_refusals.labels(operation="watch").inc()
                    log.error("watching node refused (%s); no more watching", describe(exc))
                    return
                delay = self.backoff.next()
                asked = retry_after(exc)
                if asked is not None and asked > delay:
                    delay = asked
                log.warning("watching node failed (%s); again in %.1f s", describe(exc), delay)
                self.stop.wait(delay)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        work: NodeWork,
        *,
        publisher: PublisherFactory | None = None,
        metrics: Metrics | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if publisher is not None:
            check_node_name(config.node_name)  # before the name reaches any URL
        self.config = config
        self.work = work
        self.metrics = metrics or Metrics()
        self.health = Health(stuck_after=max(120.0, 4 * MAX_WAIT_SLICE))
        self.rng = rng
        self.stop = threading.Event()
        self._wake = threading.Event()
        self._trigger: str | None = None
        self._lock = threading.Lock()
        self.publisher_factory = publisher
        self.worker: PublishWorker | None = None
        self._watch_lock = threading.Lock()
        self._first_check_done = False
        self.watcher: BootWatcher | None = None
        self.server: HealthServer | None = None
        self.last: CheckResult | None = None
        self._local_boot = self._read_boot_id()
        self.checks = 0

    # ---- signals and triggers

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("signal %d: stopping", signum)
        self.stop.set()
        self._wake.set()
        if self.worker is not None:
            self.worker.wake()

    def trigger(self, why: str) -> None:
        with self._lock:
            self._trigger = why
        self._wake.set()

    def _on_boot(self, boot_id: str) -> None:
        self.trigger("boot")

    def _read_boot_id(self) -> str | None:
        path = self.config.boot_id_file
        if path is None:
            return None
        text = read_text_or_none(path, cap=4096)
        return (text.strip() or None) if text is not None else None

    # ---- running

    def start_threads(self) -> None:
        if self.config.metrics_addr is not None:
            self.server = HealthServer(self.config.metrics_addr, self.health, self.metrics).start()
            log.info(
                "serving /healthz /readyz /metrics on %s:%d", self.server.host, self.server.port
            )
        if self.publisher_factory is not None:
            backoff = Backoff(self.config.retry_base, self.config.retry_cap, self.rng)
            self.worker = PublishWorker(
                self.publisher_factory,
                self.metrics,
                self.stop,
                backoff,
                on_ready=lambda _: self._maybe_start_watcher(),
                on_fatal=lambda _: self.request_stop(),
                on_published=self._on_published,
            ).start()

    def _maybe_start_watcher(self) -> None:
        """Once the first check is done and the client exists: the first publication must not
        wait behind the watch."""
        with self._watch_lock:
            worker = self.worker
            if (
                self.watcher is not None
                or worker is None
                or worker.publisher is None
                or not self._first_check_done
                or not self.config.watch
                or self.config.once
                or self.stop.is_set()
            ):
                return
            self.watcher = BootWatcher(
                worker.publisher.client,
                self.config.node_name,
                self._on_boot,
                self.metrics,
                self.stop,
                Backoff(self.config.retry_base, self.config.retry_cap, self.rng),
            ).start()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        """Loop until stopped (exit 0); with ``once``: one check, published; exit 0 ready / 1 not."""
        self.start_threads()
        try:
            trigger = "start"
            while not self.stop.is_set():
                result = self.check_once(trigger)
                if self.config.once:
                    return self._finish_once(result)
                if not self._first_check_done:
                    self._first_check_done = True
                    self._maybe_start_watcher()
                trigger = self._wait()
        finally:
            self.close()
        if self.worker is not None and self.worker.fatal is not None:
            raise self.worker.fatal
        return 0

    def check_once(self, trigger: str) -> CheckResult:
        self.health.progress()
        result = self.work.check()
        self.checks += 1
        self.last = result
        self._record(trigger, result)
        ready = bool(result.ready)
        if self.publisher_factory is None:
            # Pod readiness is the agent's, not the node's (that is the Node condition and the
            # taint): one node that cannot be made ready must not hold up `kubectl rollout
            # status`, `install --wait` or a GitOps health check for ever.
            self.health.set_ready(
                True, f"checked: node {_word(result.ready)} ({result.reason.value})"
            )
        level = logging.INFO if ready else logging.WARNING
        log.log(
            level,
            "check (%s) in %.3f s: %s %s: %s",
            trigger,
            result.seconds,
            "ready" if ready else "not ready",
            result.reason.value,
            result.message,
        )
        if self.worker is not None:
            # The kernel that was checked: the local boot ID (the kubelet reports the same one
            # as status.nodeInfo.bootID); the Node's when the local one cannot be read.
            boot = self._read_boot_id() or (self.watcher.boot_id if self.watcher else None)
            self.worker.submit(result.publication(boot))
        self.health.progress()
        return result

    def _on_published(self, pub: Publication) -> None:
        """Ready from the first publication on (an API outage later does not unready the pod:
        node-local work goes on, and liveness catches a wedged loop)."""
        self.health.set_ready(True, f"published: node {_word(pub.ready)} ({pub.reason})")

    def _record(self, trigger: str, result: CheckResult) -> None:
        m = self.metrics
        m.checks.labels(trigger=trigger).inc()
        m.check_duration.observe(result.seconds)
        m.last_check.set(time.time())
        m.node_ready.set(1 if result.ready else 0)
        counts = dict.fromkeys((s.value for s in State), 0)
        if result.report is not None:
            for module in result.report.modules:
                counts[module.state.value] += 1
            m.set_info(result.report.kernel.release, result.report.backend, result.report.profile)
        for state, count in counts.items():
            m.modules.labels(state=state).set(count)
        if result.fix.loaded:
            m.loads.labels(result="ok").inc(len(result.fix.loaded))
        if result.fix.failed:
            m.loads.labels(result="failed").inc(len(result.fix.failed))
        if result.probe is not None:
            if result.probe.seconds is not None:
                m.probe_duration.observe(result.probe.seconds)
            m.probe_success.set(1 if result.probe.ok else 0)

    def _wait(self) -> str:
        """Sleep until the jittered timer, a boot ID change or a stop; return the trigger."""
        deadline = time.monotonic() + jittered(self.config.interval, self.config.jitter, self.rng)
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                boot = self._read_boot_id()
                if boot is not None and self._local_boot is not None and boot != self._local_boot:
                    self._local_boot = boot
                    return "boot"
                return "timer"
            self._wake.wait(min(left, MAX_WAIT_SLICE))
            self.health.progress()
            if self._wake.is_set():
                self._wake.clear()
                with self._lock:
                    why, self._trigger = self._trigger, None
                if why is not None and not self.stop.is_set():
                    return why
        return "stop"

    def _finish_once(self, result: CheckResult) -> int:
        if self.worker is not None:
            published = self.worker.wait_published(1, self.config.once_timeout)
            if self.worker.fatal is not None:
                raise self.worker.fatal
            if not published:
                log.error(
                    "could not publish on node %s within %g s: %s",
                    self.config.node_name,
                    self.config.once_timeout,
                    self.worker.last_error or "stopped",
                )
                return 1
        return 0 if result.ready else 1

    def close(self) -> None:
        self.stop.set()
        if self.worker is not None:
            self.worker.wake()
            self.worker.join(2.0)
        if self.server is not None:
            with contextlib.suppress(OSError):  # closing its socket; the process is ending
                self.server.close()
