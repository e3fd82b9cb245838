"""Options shared by commands: where the rules come from, which kernel to look at, which image
a pod runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from meshready.cli.choices import enum_choice
from meshready.errors import InputError
from meshready.host.facts import HostFacts, gather_live, gather_offline
from meshready.host.root import HostRoot
from meshready.knowledge.profiles import PROFILES
from meshready.knowledge.requests import Backend

F = TypeVar("F", bound=Callable[..., Any])

_PATH = click.Path(path_type=Path)


def rules_options(func: F) -> F:
    for option in reversed(
        [
            click.option(
                "--profile",
                metavar="NAME",
                help=f"mesh mode whose rules to use ({', '.join(sorted(PROFILES))}); "
                "default istio-sidecar",
            ),
            click.option(
                "--rules",
                "rules",
                multiple=True,
                metavar="[iptables:|ip6tables:|nft:]FILE",
                help="your own rules (iptables-restore input or nft script); repeatable",
            ),
            click.option(
                "--backend",
                type=enum_choice(Backend),
                help="iptables-legacy, iptables-nft, or native nftables (default: the "
                "profile's; legacy for iptables rules, nftables for nft rules)",
            ),
        ]
    ):
        func = option(func)
    return func


def iptables_version_option(func: F) -> F:
    """``--iptables-version``: the iptables the mesh's image ships (iptables-nft's requests depend
    on it; knowledge/iptables_versions.py)."""
    return click.option(
        "--iptables-version",
        metavar="X.Y.Z",
        help="iptables version in the mesh's image (default: the profile's; see "
        "docs/knowledge.md); decides which iptables-nft modules are required",
    )(func)


def image_options(image_help: str) -> Callable[[F], F]:
    """``--image`` (``image_help`` says whose) and ``--image-pull-policy``: the image of the pods a
    command creates (the agent's for install, a node pod's for node/NAME)."""

    def decorate(func: F) -> F:
        from meshready.cluster.manifests import DEFAULT_IMAGE, ImagePullPolicy

        for option in reversed(
            [
                click.option(
                    "--image",
                    default=DEFAULT_IMAGE,
                    show_default=True,
                    metavar="REF",
                    help=image_help,
                ),
                click.option(
                    "--image-pull-policy",
                    type=enum_choice(ImagePullPolicy),
                    default=ImagePullPolicy.IF_NOT_PRESENT.value,
                    show_default=True,
                ),
            ]
        ):
            func = option(func)
        return func

    return decorate


def host_options(func: F) -> F:
    for option in reversed(
        [
            click.option(
                "--host-root",
                type=_PATH,
                metavar="DIR",
                help="the node's root filesystem mounted here (as in the agent's pod)",
            ),
            click.option(
                "--lsmod",
                type=_PATH,
                metavar="FILE",
                help="offline: lsmod output (or /proc/modules) of the node",
            ),
            click.option("--kernel-release", metavar="R", help="offline: the node's `uname -r`"),
            click.option(
                "--modules-dir",
                type=_PATH,
                metavar="DIR",
                help="module tree with depmod output (/lib/modules/R, or its parent)",
            ),
            click.option(
                "--kernel-config",
                type=_PATH,
                metavar="FILE",
                help="the kernel's config (/boot/config-R or config.gz)",
            ),
        ]
    ):
        func = option(func)
    return func


def facts_from_options(
    host_root: Path | None,
    lsmod: Path | None,
    kernel_release: str | None,
    modules_dir: Path | None,
    kernel_config: Path | None,
) -> HostFacts:
    offline = lsmod is not None or kernel_release is not None or kernel_config is not None
    if offline:
        if host_root is not None:
            raise InputError(
                "--host-root",
                "cannot be combined with offline inputs (--lsmod, "
                "--kernel-release, --kernel-config)",
            )
        if lsmod is None:
            raise InputError("--lsmod", "offline checks need the node's lsmod output")
        if kernel_release is None and modules_dir is None:
            raise InputError("--kernel-release", "offline checks need the node's kernel release")
        facts = gather_offline(lsmod, kernel_release, modules_dir, kernel_config)
        if facts.arch is None and facts.release:
            from dataclasses import replace

            from meshready.cli.machine import arch_from_release

            facts = replace(facts, arch=arch_from_release(facts.release))
        return facts
    if host_root is not None and not host_root.is_dir():
        raise InputError(str(host_root), "host root is not a directory")
    root = HostRoot(host_root) if host_root is not None else HostRoot()
    return gather_live(root, modules_dir)
