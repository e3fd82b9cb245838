"""What to do after a ``check``: steps that fit the case (where the check ran, what is missing).

Commands that can be pasted as they are go in ``Step.commands`` (printed flush left, never wrapped);
commands with a name to fill in are part of the prose, so that nothing pasted can misfire.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import click

from meshready.actions.bootstrap import PROVIDERS
from meshready.actions.persist import PERSIST_PATH
from meshready.assess.report import Report, State
from meshready.cli.machine import Where
from meshready.cli.output import print_commands, print_prose

_MODULE = re.compile(r"^[A-Za-z0-9_-]+$")  # what may go into a command line unquoted


@dataclass(frozen=True)
class Step:
    text: str
    commands: tuple[str, ...] = ()


def load_commands(report: Report) -> tuple[str, ...]:
    """modprobe what is missing, then persist every needed loadable module (a heredoc: a long
    module list stays one short line per module, whatever the terminal's width)."""
    missing = [
        m.name
        for m in report.modules
        if m.direct and m.state in (State.LOADABLE, State.UNKNOWN) and _MODULE.match(m.name)
    ]
    persist = [
        m.name
        for m in report.modules
        if m.direct
        and m.state in (State.LOADED, State.LOADABLE, State.UNKNOWN)
        and _MODULE.match(m.name)
    ]
    if not missing:
        return ()
    body = "\n".join(persist)
    return (
        f"sudo modprobe -a {' '.join(missing)}",
        f"sudo tee {PERSIST_PATH} >/dev/null <<'EOF'\n{body}\nEOF",
    )


def next_steps(report: Report, where: Where, node: str | None = None) -> list[Step]:
    """Steps for a check of ``where`` (``node``: the name of the node, for ``Where.NODE``)."""
    if report.ready:
        return []
    steps: list[Step] = []
    absent = [m.name for m in report.modules if m.state is State.ABSENT]
    absent += [u.request for u in report.unresolved]
    unknown = [m.name for m in report.modules if m.state is State.UNKNOWN]
    commands = load_commands(report)
    providers = "|".join(PROVIDERS)
    if commands and where is Where.NODE and node:
        steps.append(
            Step(
                "load and persist them on that node from here (a short-lived pod with exactly "
                "the agent's capabilities):",
                (f"kubectl meshready fix node/{node}",),
            )
        )
        steps.append(Step("or on every node, now and on new ones: kubectl meshready install"))
    elif commands:
        here = where in (Where.LIVE, Where.HOST_ROOT)
        on = "on this machine" if here else "on the node"
        steps.append(Step(f"load them now and at every boot, {on}:", commands))
        if here:
            steps.append(Step("or let meshready plan, load and persist them:", _fix_commands()))
        else:
            steps.append(
                Step(
                    "or from a workstation with kubectl, check and fix the node itself: "
                    "kubectl meshready check node/NAME, then kubectl meshready fix node/NAME"
                )
            )
    if unknown and where is Where.OFFLINE:
        steps.append(
            Step(
                f"{len(unknown)} module(s) unknown: without the node's module tree nobody can "
                "tell loadable from absent; add --modules-dir (a copy of the node's "
                "/lib/modules/RELEASE) or --kernel-config (/boot/config-RELEASE)"
            )
        )
    if commands:
        steps.append(
            Step(
                "for a node pool, have every new node load them at boot: meshready render "
                f"bootstrap --provider {providers}"
            )
        )
    if absent:
        steps.append(
            Step(
                f"not in this kernel: {' '.join(absent)}. No load can help: use a node image "
                "whose kernel has them, or a mesh backend this kernel has (compare: meshready "
                "check --backend nft, --backend nftables)"
            )
        )
    return steps


def _fix_commands() -> tuple[str, ...]:
    return ("sudo meshready fix --dry-run", "sudo meshready fix")


def print_steps(steps: Sequence[Step]) -> None:
    if not steps:
        return
    click.echo("")
    click.echo("next steps:")
    for step in steps:
        if step.commands:
            print_commands(f"- {step.text}", step.commands)
        else:
            print_prose(f"- {step.text}", hang="  ")
