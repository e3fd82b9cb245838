"""``meshready render``: print files for nodes and clusters (bootstrap snippets, manifests)."""

from __future__ import annotations

import importlib

import click


@click.group()
def render() -> None:
    """Print bootstrap snippets and Kubernetes manifests derived from the assessment."""


# Subcommands live in their own modules; each defines a click command named like the module suffix.
for _module, _attr in (
    ("meshready.cli.render_bootstrap", "bootstrap"),
    ("meshready.cli.render_manifests", "manifests"),
):
    try:
        render.add_command(getattr(importlib.import_module(_module), _attr))
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
