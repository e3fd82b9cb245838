"""``check node/NAME`` and ``fix node/NAME`` from a workstation (kubectl plugin form).

Per node: with a meshready agent reporting on it, its published result; without one (or with
``--via pod``), a short-lived pod on that node (``cluster.node_pod``) runs the same command against
the host root and is deleted afterwards. Several nodes (arguments and/or ``-l``) run at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from meshready.cli.kube import connect_with_config, kube_options, talking_to
from meshready.cli.options import image_options
from meshready.cli.output import emit_json, print_table, render_report, snake_keys
from meshready.errors import InputError, MeshreadyError
from meshready.knowledge.requests import Backend

if TYPE_CHECKING:
    from meshready.cluster.manifests import ImagePullPolicy

F = TypeVar("F", bound=Callable[..., Any])

SCHEMA = "meshready.io/node-check/v1"  # src/meshready/schemas/node-check.json
MAX_PARALLEL = 4
MAX_NODES = 200  # a selector that matches a whole fleet wants `status`, not a pod per node


def node_options(func: F) -> F:
    for option in reversed(
        [
            click.option(
                "-l",
                "--selector",
                metavar="SELECTOR",
                help="node/NAME for every node with these labels (kubectl syntax: k=v, k!=v, "
                "k in (a,b), !k)",
            ),
            click.option(
                "--via",
                type=click.Choice(["auto", "agent", "pod"]),
                default="auto",
                show_default=True,
                help="node/NAME: the agent's published result (agent), a short-lived pod on the "
                "node (pod), or the agent's when it reports (auto)",
            ),
            image_options("node/NAME: image of the pod (the same as `install --image`)"),
            click.option(
                "-n",
                "--namespace",
                metavar="NS",
                help="node/NAME: namespace of the pod (default: the context's, as kubectl debug)",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=1),
                default=180.0,
                show_default=True,
                metavar="S",
                help="node/NAME: how long the pod may take (image pull included)",
            ),
        ]
    ):
        func = option(func)
    return func


@dataclass(frozen=True)
class NodeRequest:
    kind: str  # check | fix
    targets: tuple[str, ...]
    selector: str | None
    via: str
    image: str
    image_pull_policy: ImagePullPolicy
    namespace: str | None
    timeout: float
    rule_args: tuple[str, ...]  # --profile/--backend for the command in the pod
    extra_args: tuple[str, ...] = ()  # fix: --no-persist, --dry-run, --allow ...


@dataclass
class NodeResult:
    node: str
    via: str  # agent | pod
    ready: bool | None = None
    report: Any = None  # Report
    data: dict[str, Any] | None = None  # the published annotation, or the pod's JSON
    pod: str | None = None
    pod_deleted: bool | None = None
    checked_seconds_ago: float | None = None
    messages: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "via": self.via,
            "ready": self.ready,
            "pod": self.pod,
            "pod_deleted": self.pod_deleted,
            "checked_seconds_ago": None
            if self.checked_seconds_ago is None
            else round(self.checked_seconds_ago),
            "result": snake_keys(self.data),
            "messages": list(self.messages),
            "error": self.error,
        }


def rule_args(
    profile: str | None, rules: Sequence[str], backend: Backend | None
) -> tuple[str, ...]:
    if rules:
        raise InputError(
            "--rules",
            "rule files are on this machine, not on the node: with node/NAME use --profile",
        )
    args: list[str] = []
    if profile:
        args.append(f"--profile={profile}")
    if backend:
        args.append(f"--backend={backend.value}")
    return tuple(args)


def _select_nodes(client: Any, request: NodeRequest) -> list[Any]:
    from lightkube.resources.core_v1 import Node

    from meshready.cli.targets import node_names
    from meshready.cluster.errors import NotFound, api_errors
    from meshready.cluster.selector import as_labels, parse_selector

    found: dict[str, Any] = {}
    for name in node_names(request.targets):
        try:
            with api_errors():
                found[name] = client.get(Node, name)
        except NotFound as exc:
            raise InputError(f"node/{name}", "no such node") from exc
    if request.selector is not None:
        labels = as_labels(parse_selector(request.selector))
        matched = list(client.list(Node, labels=labels))
        if not matched and not found:
            raise InputError("-l", f"no node matches {request.selector!r}")
        for node in matched:
            found.setdefault(node.metadata.name, node)
    if len(found) > MAX_NODES:
        raise InputError(
            "-l",
            f"{len(found)} nodes: more than {MAX_NODES} at once; `meshready status` shows a "
            "fleet from what the agents publish",
        )
    return list(found.values())


def _matches(published: dict[str, Any] | None, rule_args: Sequence[str]) -> bool:
    """Did the agent check what was asked (--profile, --backend)? Else its answer is another's."""
    data = published or {}
    for arg in rule_args:
        option, _, value = arg.partition("=")
        if data.get(option.removeprefix("--")) != value:
            return False
    return True


def _from_agent(node: Any, rule_args: Sequence[str] = ()) -> NodeResult | None:
    from datetime import UTC, datetime

    from meshready.cluster.node_report import published_report
    from meshready.cluster.published import read_node_state

    state = read_node_state(node)
    report = published_report(state)
    if report is None or state.stale or state.ready is None:
        return None
    if not _matches(state.report, rule_args):
        return None
    heartbeat = state.condition.last_heartbeat if state.condition else None
    age = (datetime.now(UTC) - heartbeat).total_seconds() if heartbeat else None
    return NodeResult(
        state.name, "agent", state.ready, report, state.report, checked_seconds_ago=age
    )


def _via_pod(
    client: Any,
    node: str,
    request: NodeRequest,
    namespace: str,
    on_state: Callable[[str], None] = lambda _: None,
) -> NodeResult:
    from meshready.assess.report import report_from_dict
    from meshready.cluster.node_pod import node_pod, run_node_pod

    args = ["--host-root=/host", "-o", "json", *request.rule_args, *request.extra_args]
    if request.kind == "fix":
        args.append("--loader=python")  # as the agent: no host modprobe needed
    body = node_pod(
        node,
        request.kind,
        image=request.image,
        namespace=namespace,
        args=args,
        image_pull_policy=request.image_pull_policy.value,
        deadline_seconds=int(request.timeout) + 30,
    )
    run = run_node_pod(client, body, timeout=request.timeout, on_state=on_state)
    result = NodeResult(node, "pod", pod=run.pod, pod_deleted=run.deleted)
    result.messages = list(run.messages)
    if not run.deleted:
        result.messages.append(
            f"could not delete pod {run.namespace}/{run.pod} ({run.delete_error}): "
            f"kubectl delete pod -n {run.namespace} {run.pod}"
        )
    result.data = run.data
    if run.data is None or run.exit_code not in (0, 1):
        why = "; ".join(run.messages[-3:]) or f"exit code {run.exit_code}, no output"
        result.error = f"the {request.kind} in pod {run.namespace}/{run.pod} failed: {why}"
        return result
    report_data = run.data.get("report") if request.kind == "fix" else run.data
    if isinstance(report_data, dict):
        result.report = report_from_dict(report_data)
        result.ready = result.report.ready
    return result


def run_on_nodes(
    request: NodeRequest,
    kubeconfig: Path | None,
    context: str | None,
    output: str,
    verbose: bool,
) -> int:
    from meshready.cli.diagnose_cluster import stderr_status

    client, connection = connect_with_config(kubeconfig, context)
    namespace = request.namespace or connection.namespace
    with client, stderr_status(output != "json") as status:
        with talking_to(connection, "reading nodes"):
            nodes = _select_nodes(client, request)

        def one(node: Any) -> NodeResult:
            name = node.metadata.name
            if request.via != "pod" and not (request.kind == "fix" and request.extra_args):
                published = _from_agent(node, request.rule_args)
                usable = published is not None and (request.kind == "check" or published.ready)
                if published is not None and usable:
                    return published
                if request.via == "agent":
                    return NodeResult(
                        name,
                        "agent",
                        error="no current report from a meshready agent (for these rules)",
                    )
            try:
                with talking_to(connection, f"running a {request.kind} pod on node/{name}"):
                    return _via_pod(client, name, request, namespace, status)
            except MeshreadyError as exc:
                return NodeResult(name, "pod", error=exc.one_line())

        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(nodes))) as pool:
            results = list(pool.map(one, nodes))
    if output == "json":
        emit_json(
            {
                "schema": SCHEMA,
                "command": request.kind,
                "nodes": [r.to_dict() for r in results],
                "all_ready": all(r.ready for r in results),
            }
        )
    else:
        _render(results, request, verbose)
    return 0 if results and all(r.ready for r in results) else 1


def _render(results: Sequence[NodeResult], request: NodeRequest, verbose: bool) -> None:
    from meshready.cli.machine import Where, arch_from_release
    from meshready.cli.next_steps import next_steps, print_steps
    from meshready.cli.output import Column
    from meshready.cli.status import age

    if len(results) > 1:
        rows = [
            (
                r.node,
                "error" if r.error else ("unknown" if r.ready is None else str(r.ready).lower()),
                r.via,
                " ".join(r.report.missing) if r.report is not None else "-",
                r.error or "",
            )
            for r in results
        ]
        columns = (
            Column("NODE", shrink=False),
            Column("READY", shrink=False),
            Column("VIA", shrink=False),
            Column("MISSING", min_width=8),
            Column("ERROR", min_width=8),
        )
        print_table(columns, rows)
        click.echo("")
    for r in results:
        if r.via == "agent":
            how = f"from its meshready agent's report (checked {age(r.checked_seconds_ago)} ago)"
        else:
            how = f"by pod {r.pod} ({'deleted' if r.pod_deleted else 'NOT deleted'})"
        click.echo(f"node/{r.node}, {request.kind} {how}")
        for message in r.messages:
            click.echo(f"  {message}")
        if r.error:
            click.echo(f"  error: {r.error}")
            continue
        if request.kind == "fix" and r.data is not None and r.via == "pod":
            _render_fix_summary(r.data)
        if r.report is not None:
            from dataclasses import replace

            report = r.report
            if report.kernel.arch is None:
                arch = arch_from_release(report.kernel.release)
                report = replace(report, kernel=replace(report.kernel, arch=arch))
            render_report(report, verbose or r.via == "agent", machine=f"node/{r.node}")
            print_steps(next_steps(report, Where.NODE, r.node))
        click.echo("")


def _render_fix_summary(data: dict[str, Any]) -> None:
    result = data.get("result") or {}
    plan = data.get("plan") or {}
    loaded = result.get("loaded") or []
    if loaded:
        click.echo(f"  loaded: {' '.join(map(str, loaded))}")
    elif plan:
        click.echo("  loaded nothing (every needed module was loaded or built in)")
    if result.get("persist_changed"):
        click.echo(f"  wrote {result.get('persist_path')}")


def node_request_options(params: dict[str, Any]) -> dict[str, Any]:
    """The node_options values, removed from PARAMS (so the local path sees only its own)."""
    keys = ("selector", "via", "image", "image_pull_policy", "namespace", "timeout")
    return {k: params.pop(k) for k in keys}


def kube_and_node_options(func: F) -> F:
    return kube_options(node_options(func))
