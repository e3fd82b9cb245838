"""``meshready diagnose``: from an init container's or CNI plugin's log to the cause and the fix."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from meshready.actions.persist import PERSIST_PATH
from meshready.boundedio import open_regular
from meshready.cli.choices import enum_choice
from meshready.cli.kube import kube_options
from meshready.cli.output import console, emit_json, output_option, print_commands, print_prose
from meshready.cli.output import fix_script as script
from meshready.diagnose.engine import diagnose_text
from meshready.diagnose.model import DiagnoseContext, Diagnosis, Finding, Where
from meshready.errors import InputError
from meshready.knowledge.requests import Backend

_MAX_BYTES = 64 * 1024 * 1024
DIAGNOSIS_SCHEMA = "meshready.io/diagnosis/v1"  # src/meshready/schemas/diagnosis.json


def read_log(spec: str) -> tuple[str, str]:
    """(text, source name) from a path or ``-`` (stdin). Bad input raises InputError."""
    if spec == "-":
        data = sys.stdin.buffer.read(_MAX_BYTES + 1)
        source = "<stdin>"
    else:
        path = Path(spec)
        source = spec
        try:
            if path.is_dir():
                raise InputError(source, "is a directory, not a log file")
            # regular files only, opened without blocking (a FIFO or device must not hang us)
            with os.fdopen(open_regular(path, source), "rb") as fh:
                data = fh.read(_MAX_BYTES + 1)
        except FileNotFoundError as exc:
            raise InputError(source, "no such file") from exc
        except PermissionError as exc:
            raise InputError(source, "cannot read (permission denied)") from exc
        except OSError as exc:
            raise InputError(source, f"cannot read ({exc.strerror or exc})") from exc
    if len(data) > _MAX_BYTES:
        raise InputError(
            source, f"larger than {_MAX_BYTES // (1024 * 1024)} MiB; cut the log first"
        )
    if b"\x00" in data:
        raise InputError(source, "binary data, not a log")
    try:
        text = data.decode("utf-8")
        legacy_encoding = False
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # decodes every byte; judged below
        legacy_encoding = True
    if (
        legacy_encoding
        and sum(1 for c in text if ord(c) < 32 and c not in "\n\r\t") > len(text) // 20
    ):
        raise InputError(source, "not a text file")
    if not text.strip():
        raise InputError(source, "empty input: no log lines")
    return text, source


@click.command()
@click.argument("logs", nargs=-1, metavar="[FILE|-|node/NAME...]")
@output_option(
    "table", "wide", "json", help_text="wide: with --cluster or node/NAME, also every pod's name"
)
@click.option(
    "--fix-script",
    is_flag=True,
    help="print only the fix, as one POSIX sh script to run on the node as root",
)
@click.option(
    "--container",
    metavar="NAME",
    help="the container the log is from (istio-init, istio-validation, linkerd-init, kuma-init, "
    "istio-cni-node, ...); refines the modules and the fix",
)
@click.option(
    "--backend",
    type=enum_choice(Backend),
    help="the iptables backend the mesh used, when the log does not tell",
)
@click.option("--kernel-release", metavar="R", help="the node's `uname -r`, for module names")
@click.option("-v", "--verbose", is_flag=True, help="show all evidence and the full fix")
@click.option(
    "--cluster",
    is_flag=True,
    help="find failed mesh init containers and CNI/ztunnel pods in the cluster and diagnose them",
)
@click.option("-n", "--namespace", metavar="NS", help="with --cluster: only this namespace")
@click.option(
    "-l",
    "--selector",
    metavar="SELECTOR",
    help="with --cluster: pod label selector, kubectl syntax (k=v, k!=v, k in (a,b), !k)",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=16,
    show_default=True,
    help="with --cluster: log reads at once",
)
@click.option("--no-headers", is_flag=True, help="with --cluster: the table without its header")
@kube_options
@click.pass_context
def diagnose(
    ctx: click.Context,
    logs: tuple[str, ...],
    output: str,
    fix_script: bool,
    container: str | None,
    backend: Backend | None,
    kernel_release: str | None,
    verbose: bool,
    cluster: bool,
    namespace: str | None,
    selector: str | None,
    concurrency: int,
    no_headers: bool,
    kubeconfig: Path | None,
    context: str | None,
) -> None:
    """Explain why a mesh's init container or CNI plugin failed, from its log.

    Reads FILE (or standard input with -): istio-init, istio-validation, istio-cni, ztunnel,
    linkerd-init / proxy-init, linkerd-network-validator, kuma-init and other iptables-based init
    containers, in any form: plain text, Istio's timestamped lines, JSON lines, logrus key=value,
    `kubectl describe` Message blocks, containerd log files, SELinux audit (AVC) lines.

    With --cluster, read the logs of every failed mesh init container and mesh CNI/ztunnel pod
    (the previous attempt too), group them by node and cause, and cross-reference each node's
    readiness as the meshready agent published it. With node/NAME, the same for the pods on
    those nodes.

    Exit 0 when nothing wrong is found, 1 when a problem is found, 2 on bad input.
    """
    from meshready.cli.targets import is_node_target, node_names

    targets = [a for a in logs if is_node_target(a)]
    if cluster or targets:
        from meshready.cli.diagnose_cluster import ClusterQuery, diagnose_cluster

        if len(targets) != len(logs):
            raise InputError(
                next(a for a in logs if not is_node_target(a)),
                "a log file cannot be combined with --cluster or node/NAME",
            )
        query = ClusterQuery(namespace, selector, node_names(targets), concurrency)
        ctx.exit(
            diagnose_cluster(
                kubeconfig, context, query, output, verbose, no_headers, script=fix_script
            )
        )
    if len(logs) > 1:
        raise InputError(logs[1], "one log at a time (or node/NAME targets)")
    text, source = read_log(logs[0] if logs else "-")
    log_context = DiagnoseContext(
        backend=backend,
        container=container,
        kernel_release=kernel_release,
    )
    diagnosis = diagnose_text(text, source, log_context)
    if fix_script:
        steps = [c for f in diagnosis.findings[:1] for c in f.fix.steps]
        node = [c for c in steps if c.where is Where.NODE]
        after = [c for c in steps if c.where is Where.CLUSTER]
        header = (
            [f"fix for: {source} ({diagnosis.findings[0].cause})"] if diagnosis.findings else []
        )
        header += ["run on the node, as root"]
        header += [f"then, from a workstation: {' '.join(c.run.split())}" for c in after]
        click.echo(script(node, header), nl=False)
    elif output == "json":
        emit_json({"schema": DIAGNOSIS_SCHEMA, **diagnosis.to_dict()})
    else:
        render(diagnosis, verbose)
    ctx.exit(0 if diagnosis.ok else 1)


def render(diagnosis: Diagnosis, verbose: bool = False) -> None:
    from rich.markup import escape

    out = console()
    if diagnosis.ok:
        out.print(
            f"[bold green]NOTHING WRONG[/]: {escape(diagnosis.source)} ({diagnosis.lines} lines) "
            "shows no interception failure."
        )
        return
    head = f"{escape(diagnosis.source)}: {len(diagnosis.findings)} finding"
    head += "s" if len(diagnosis.findings) != 1 else ""
    if diagnosis.backend:
        head += f"  (backend {diagnosis.backend}"
        head += f", kernel {escape(diagnosis.kernel_release)})" if diagnosis.kernel_release else ")"
    out.print(head)
    for n, finding in enumerate(diagnosis.findings, start=1):
        _render_finding(out, n, finding, verbose, first=n == 1)


def _render_finding(out: Any, n: int, f: Finding, verbose: bool, first: bool) -> None:
    from rich.markup import escape

    style = "bold red" if first else "bold yellow"
    out.print()
    out.print(
        f"[{style}]{n}. {f.cause}[/]: {escape(f.title)}  [dim](confidence {f.confidence:.2f})[/]"
    )
    if f.modules:
        out.print(f"   modules: [bold]{escape(' '.join(f.modules))}[/]")
    print_prose(f.explanation, indent="   ")
    shown = f.evidence_lines if verbose else f.evidence_lines[:3]
    if shown:
        out.print("   evidence:")
        for ev in shown:
            out.print(f"     [dim]{ev.line}:[/] {escape(ev.text)}")
        hidden = len(f.evidence_lines) - len(shown)
        if hidden:
            out.print(f"     [dim](+{hidden} more; -v shows all)[/]")
    node = [c for c in f.fix.steps if c.where is Where.NODE]
    after = [c for c in f.fix.steps if c.where is Where.CLUSTER]
    if node:
        print_commands("fix, on the node:", node, indent="   ")
    if after:
        print_commands("then, from a workstation with kubectl:", after, indent="   ")
    if f.fix.modules_load_conf and verbose:
        out.print(f"   {PERSIST_PATH}:")
        for line in f.fix.modules_load_conf.splitlines():
            out.print(f"     {escape(line)}")
    if f.fix.meshready_steps:
        print_commands("or with meshready:", f.fix.meshready_steps, indent="   ")
    notes = f.fix.notes if verbose or first else f.fix.notes[:1]
    for note in notes:
        print_prose(f"- {note}", indent="   ", hang="  ")
