"""Commands that live in their own modules (fix, diagnose, cluster commands, agent)."""

from __future__ import annotations

import importlib

import click

# module path -> attribute; each module defines one click command or group.
_COMMANDS = (
    ("meshready.cli.fix", "fix"),
    ("meshready.cli.fix", "unfix"),
    ("meshready.cli.probe", "probe"),
    ("meshready.cli.render", "render"),
    ("meshready.cli.diagnose", "diagnose"),
    ("meshready.cli.status", "status"),
    ("meshready.cli.cluster", "install"),
    ("meshready.cli.cluster", "uninstall"),
    ("meshready.cli.agent", "agent"),
)


def commands() -> list[click.Command]:
    out: list[click.Command] = []
    for module_name, attr in _COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not built yet
            raise
        out.append(getattr(module, attr))
    return out
