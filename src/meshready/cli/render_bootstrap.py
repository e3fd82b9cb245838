"""``meshready render bootstrap``: node bootstrap snippets that load the needed modules at boot."""

from __future__ import annotations

from pathlib import Path

import click

from meshready.actions.bootstrap import BootstrapProvider, Source, render_bootstrap
from meshready.assess.assess import assess
from meshready.assess.plan import needs_from_options
from meshready.assess.report import State
from meshready.cli.choices import enum_choice
from meshready.cli.options import rules_options
from meshready.host.facts import HostFacts, gather_live, gather_offline
from meshready.host.root import HostRoot
from meshready.knowledge.requests import Backend

_PATH = click.Path(path_type=Path)


@click.command()
@click.option(
    "--provider",
    type=enum_choice(BootstrapProvider),
    required=True,
    help="oke: an OKE node pool's cloud-init script (around Oracle's oke_init_script); "
    "cloud-init: #cloud-config; modules-load: the modules-load.d file; talos: a machine "
    "config patch; bottlerocket: settings TOML",
)
@rules_options
@click.option("--kernel-release", metavar="R", help="the nodes' kernel (`uname -r`)")
@click.option(
    "--modules-dir",
    type=_PATH,
    metavar="DIR",
    help="the nodes' module tree with depmod output: built-in modules are left out",
)
@click.option(
    "--kernel-config", type=_PATH, metavar="FILE", help="the nodes' kernel config (built-ins)"
)
@click.option(
    "--host-root", type=_PATH, metavar="DIR", help="derive for the kernel of this host root"
)
def bootstrap(
    provider: BootstrapProvider,
    profile: str | None,
    rules: tuple[str, ...],
    backend: Backend | None,
    kernel_release: str | None,
    modules_dir: Path | None,
    kernel_config: Path | None,
    host_root: Path | None,
) -> None:
    """Print what a cloud's node bootstrap needs to load the modules at every boot.

    The module list is the assessment's: for the kernel given by --modules-dir/--kernel-release/
    --kernel-config (built-in modules left out), or --host-root, else for a typical kernel (every
    module the rules can need).
    """
    spec = needs_from_options(profile, rules, backend)
    facts: HostFacts
    if modules_dir is not None or kernel_release is not None or kernel_config is not None:
        facts = gather_offline(None, kernel_release, modules_dir, kernel_config)
    elif host_root is not None:
        facts = gather_live(HostRoot(host_root)).kernel_only()
    else:
        facts = gather_offline(None, None)  # a typical kernel: built-in knowledge only
    report = assess(spec.needs, facts, spec.backend, spec.profile, spec.rules)
    modules = [m.name for m in report.modules if m.state not in (State.BUILTIN, State.ABSENT)]
    if facts.index is None:
        # Without the nodes' own module tree, name only what the rules need directly: modprobe
        # adds each one's dependencies from the node's modules.dep, whatever they are on that
        # kernel (libcrc32c, for one, is gone from 6.14 on).
        modules = [m.name for m in report.modules if m.direct and m.name in modules]
    absent = [m.name for m in report.modules if m.state is State.ABSENT]
    if absent:
        click.echo(
            f"meshready: warning: not in kernel {report.kernel.release}: {', '.join(absent)} "
            "(no bootstrap can load them; left out)",
            err=True,
        )
    source = Source(
        profile=spec.profile,
        backend=spec.backend,
        rules=spec.rules,
        kernel=report.kernel.release if facts.index or facts.config else None,
    )
    click.echo(render_bootstrap(provider, modules, source), nl=False)
