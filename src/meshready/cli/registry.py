"""Every command, by name, and the module that defines it: imported only when that command runs,
so `meshready check` does not pay for the Kubernetes client the cluster commands use.

Every dependency is a default dependency (one install): an import error here is a packaging bug,
reported by main() as an internal error (exit 3), never as "not ready".
"""

from __future__ import annotations

import importlib
import importlib.util

import click

# command name -> (module, attribute)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("meshready.cli.check", "check"),
    "needs": ("meshready.cli.needs", "needs"),
    "profiles": ("meshready.cli.needs", "profiles"),
    "fix": ("meshready.cli.fix", "fix"),
    "unfix": ("meshready.cli.fix", "unfix"),
    "probe": ("meshready.cli.probe", "probe"),
    "render": ("meshready.cli.render", "render"),
    "diagnose": ("meshready.cli.diagnose", "diagnose"),
    "status": ("meshready.cli.status", "status"),
    "install": ("meshready.cli.cluster", "install"),
    "uninstall": ("meshready.cli.cluster", "uninstall"),
    "agent": ("meshready.cli.agent", "agent"),
    "completion": ("meshready.cli.completion", "completion"),
}


def available(name: str) -> bool:
    module = COMMANDS[name][0]
    return importlib.util.find_spec(module) is not None


def load(name: str) -> click.Command:
    module_name, attr = COMMANDS[name]
    command = getattr(importlib.import_module(module_name), attr)
    assert isinstance(command, click.Command)
    return command
