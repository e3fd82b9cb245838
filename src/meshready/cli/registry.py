"""Every command, by name, and the module that defines it: imported only when that command runs,
so `meshready check` does not pay for the Kubernetes client the cluster commands use."""

from __future__ import annotations

import importlib
import importlib.util

import click

from meshready.errors import MeshreadyError

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
}

# Third-party packages of the optional `cluster` extra.
_CLUSTER_EXTRA = {"lightkube", "httpx2", "httpx", "prometheus_client", "yaml"}


def available(name: str) -> bool:
    module = COMMANDS[name][0]
    return importlib.util.find_spec(module) is not None


def load(name: str) -> click.Command:
    module_name, attr = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in _CLUSTER_EXTRA:
            return _needs_extra(name, exc.name or "")
        raise
    command = getattr(module, attr)
    assert isinstance(command, click.Command)
    return command


def _needs_extra(name: str, missing: str) -> click.Command:
    @click.command(name=name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def stub(args: tuple[str, ...]) -> None:
        """(needs the cluster extras: pip install 'meshready[cluster]')"""
        raise MeshreadyError(
            f"`{name}` needs the cluster extras ({missing} is not installed): "
            "pip install 'meshready[cluster]'"
        )

    return stub
