"""``meshready agent``: the per-node loop of the DaemonSet (see docs/agent.md)."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import Any

import click

from meshready.agent.work import AgentLoader, AgentProbeMode
from meshready.assess.plan import needs_from_options
from meshready.cli.choices import enum_choice
from meshready.cli.kube import kube_options
from meshready.cli.options import rules_options
from meshready.cluster.names import (
    AGENT_FIELD_MANAGER,
    DEFAULT_TAINT_EFFECT,
    DEFAULT_TAINT_KEY,
    EVENTS_NAMESPACE,
    METRICS_PORT,
    TAINT_EFFECTS,
)
from meshready.errors import InputError
from meshready.knowledge.requests import Backend

_PATH = click.Path(path_type=Path)


def _taint(value: str) -> tuple[str, str]:
    key, sep, effect = value.partition(":")
    effect = effect if sep else DEFAULT_TAINT_EFFECT
    if not key or effect not in TAINT_EFFECTS:
        raise InputError(
            "--taint-key", f"expected KEY[:EFFECT] ({'|'.join(TAINT_EFFECTS)}), got {value!r}"
        )
    return key, effect


def _boot_id(path: Path) -> str | None:
    from meshready.boundedio import read_text_or_none

    text = read_text_or_none(path, cap=4096)
    return (text.strip() or None) if text else None


@click.command()
@click.option(
    "--node-name",
    envvar="NODE_NAME",
    metavar="NAME",
    help="this node's name (default: $NODE_NAME, set from spec.nodeName in the DaemonSet)",
)
@click.option(
    "--host-root",
    type=_PATH,
    default=Path("/"),
    show_default=True,
    metavar="DIR",
    help="the node's files mounted here (/host in the DaemonSet: /lib/modules, /etc/modules-load.d)",
)
@click.option("--proc", "proc_dir", type=_PATH, hidden=True, help="the kernel's /proc (tests)")
@click.option("--sys", "sys_dir", type=_PATH, hidden=True, help="the kernel's /sys (tests)")
@rules_options
@kube_options
@click.option(
    "--no-cluster", is_flag=True, help="node-local only: assess, fix and probe, publish nothing"
)
@click.option("--once", is_flag=True, help="one check (published), then exit 0 ready / 1 not ready")
@click.option(
    "--init",
    "init_step",
    is_flag=True,
    help="the init container's step: assess, load, persist once (no probe, no cluster), write "
    "--fix-record, exit 0 (2 on bad input)",
)
@click.option(
    "--fix-record",
    type=_PATH,
    metavar="FILE",
    help="--init writes what it loaded here; with --loader none the agent reports it",
)
@click.option(
    "--loader",
    type=enum_choice(AgentLoader),
    default=AgentLoader.AUTO.value,
    show_default=True,
    help="how to load modules (python: the module syscalls, no kmod needed; none: never load)",
)
@click.option(
    "--persist/--no-persist",
    default=True,
    show_default=True,
    help="write /etc/modules-load.d/meshready.conf so the modules load at boot",
)
@click.option(
    "--probe-mode",
    type=enum_choice(AgentProbeMode),
    default=AgentProbeMode.INPLACE.value,
    show_default=True,
    help="redirect probe: in this pod's network namespace (inplace), a new one (netns), or none",
)
@click.option(
    "--taint-key",
    default=f"{DEFAULT_TAINT_KEY}:{DEFAULT_TAINT_EFFECT}",
    show_default=True,
    metavar="KEY[:EFFECT]",
    help="the startup taint to remove once the node is ready",
)
@click.option("--no-taint", is_flag=True, help="do not remove any startup taint")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    metavar="S",
    help="re-check every S seconds (varied by --jitter)",
)
@click.option(
    "--jitter", type=click.FloatRange(0.0, 0.9), default=0.2, show_default=True, metavar="F"
)
@click.option(
    "--heartbeat",
    type=click.FloatRange(min=1.0),
    default=600.0,
    show_default=True,
    metavar="S",
    help="refresh the condition's lastHeartbeatTime at least this often",
)
@click.option(
    "--metrics-addr",
    default=f"0.0.0.0:{METRICS_PORT}",
    show_default=True,
    metavar="HOST:PORT",
    help="serve /healthz, /readyz, /metrics here ('off' for none)",
)
@click.option(
    "--events-namespace",
    default=EVENTS_NAMESPACE,
    show_default=True,
    metavar="NS",
    help="where to record Events about the node",
)
@click.option(
    "--once-timeout",
    type=click.FloatRange(min=0.0),
    default=30.0,
    show_default=True,
    metavar="S",
    help="--once: how long to retry publishing",
)
@click.option(
    "--retry-max",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    metavar="S",
    help="longest wait between retries of a failed API request (exponential backoff, jittered)",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["log", "json"]),
    default="log",
    help="--once: print the result as JSON",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def agent(
    node_name: str | None,
    host_root: Path,
    proc_dir: Path | None,
    sys_dir: Path | None,
    profile: str | None,
    rules: tuple[str, ...],
    backend: Backend | None,
    kubeconfig: Path | None,
    context: str | None,
    no_cluster: bool,
    once: bool,
    init_step: bool,
    fix_record: Path | None,
    loader: AgentLoader,
    persist: bool,
    probe_mode: AgentProbeMode,
    taint_key: str,
    no_taint: bool,
    interval: float,
    jitter: float,
    heartbeat: float,
    metrics_addr: str,
    events_namespace: str,
    once_timeout: float,
    retry_max: float,
    output: str,
    log_level: str,
) -> None:
    """Run the node agent: assess, fix, probe, publish on the Node, then wait and re-check.

    Re-checks on a jittered timer and when the node's boot ID changes. Publishes the
    MeshInterceptionReady condition, meshready.io/ labels, the report annotation and Events on
    its Node, and removes the startup taint once the node is ready. API errors are retried with
    backoff while node-local work goes on. SIGTERM exits 0. With --once: exit 0 when ready (and
    published), 1 when not, 2 on bad input.
    """
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    import faulthandler
    import signal

    faulthandler.enable()  # a fatal signal prints every thread's stack
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # so does `kill -USR1`
    if log_level != "debug":  # one line per HTTP request is too much for a node agent
        logging.getLogger("httpx2").setLevel(logging.WARNING)
    from meshready.agent.loop import Agent, AgentConfig
    from meshready.agent.server import parse_addr
    from meshready.agent.work import ActionsFixer, ActionsProber, NodeWork
    from meshready.host.root import HostRoot

    if not host_root.is_dir():
        raise InputError("--host-root", f"{host_root} is not a directory")
    spec = needs_from_options(profile, rules, backend)
    taint = None if no_taint else _taint(taint_key)
    addr = None
    if metrics_addr.strip().lower() not in ("", "off", "none"):
        try:
            addr = parse_addr(metrics_addr)
        except ValueError as exc:
            raise InputError("--metrics-addr", str(exc)) from exc
    root = HostRoot(
        host_root,
        proc=proc_dir if proc_dir is not None else Path("/proc"),
        sys=sys_dir if sys_dir is not None else Path("/sys"),
    )
    if not no_cluster and not node_name:
        raise InputError("--node-name", "required (or $NODE_NAME) unless --no-cluster")
    node = node_name or socket.gethostname()

    from meshready.agent.initstep import RecordedFixer, run_init

    boot_file = root.path("/proc/sys/kernel/random/boot_id")
    loader_kind = loader.loader_kind()
    fixer: Any = None if loader_kind is None else ActionsFixer(spec, root, loader_kind, persist)
    if init_step:
        if fixer is None:
            raise InputError("--init", "loads modules: needs a --loader other than none")
        result = NodeWork(spec, root, fixer=fixer, prober=None).check()
        raise SystemExit(run_init(result, fix_record, _boot_id(boot_file)))
    if fixer is None and fix_record is not None:
        fixer = RecordedFixer(fix_record, lambda: _boot_id(boot_file))
    mode = probe_mode.probe_mode()
    prober = None if mode is None else ActionsProber(spec, mode)
    work = NodeWork(spec, root, fixer=fixer, prober=prober)

    factory = None
    if not no_cluster:

        def factory() -> Any:
            # Runs in the publisher thread, while the first check runs (see agent.loop).
            from meshready.cluster.connect import make_client, resolve
            from meshready.cluster.node import NodePublisher, TaintSpec

            connection = resolve(kubeconfig, context)
            client = make_client(connection, field_manager=AGENT_FIELD_MANAGER)
            logging.getLogger("meshready.agent").info(
                "node %s, API server %s (%s)", node, connection.server, connection.source
            )
            return NodePublisher(
                client,
                node,
                taint=TaintSpec(*taint) if taint else None,
                heartbeat_seconds=heartbeat,
                events_namespace=events_namespace,
                field_manager=AGENT_FIELD_MANAGER,
            )

    config = AgentConfig(
        node_name=node,
        interval=interval,
        jitter=jitter,
        once=once,
        once_timeout=once_timeout,
        metrics_addr=addr,
        boot_id_file=root.path("/proc/sys/kernel/random/boot_id"),
        retry_base=min(0.5, retry_max),
        retry_cap=retry_max,
    )
    runner = Agent(config, work, publisher=factory)
    runner.install_signal_handlers()
    try:
        code = runner.run()
    except OSError as exc:
        if addr is not None and runner.server is None:
            raise InputError(
                "--metrics-addr", f"cannot listen on {metrics_addr}: {exc.strerror}"
            ) from exc
        raise
    if once and output == "json" and runner.last is not None:
        from meshready.cli.output import emit_json, snake_keys

        emit_json({"schema": "meshready.io/agent-check/v1", **snake_keys(runner.last.to_dict())})
    sys.stdout.flush()
    raise click.exceptions.Exit(code)
