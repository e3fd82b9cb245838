"""``meshready probe``: apply the rules for real and check that interception works."""

from __future__ import annotations

import click

from meshready.actions.probe import Mode
from meshready.actions.probe import probe as run_probe
from meshready.assess.plan import needs_from_options
from meshready.cli.choices import enum_choice
from meshready.cli.options import rules_options
from meshready.cli.output import emit_json
from meshready.knowledge.requests import Backend


@click.command()
@rules_options
@click.option(
    "--mode",
    type=enum_choice(Mode),
    default=Mode.NETNS.value,
    show_default=True,
    help="netns: a throwaway network namespace (root); inplace: in this network namespace, "
    "without touching its traffic (CAP_NET_ADMIN only)",
)
@click.option(
    "--proxy-uid",
    type=click.IntRange(0, 2**32 - 2),
    metavar="UID",
    help="the proxy's uid, whose traffic must not be redirected (default: the profile's)",
)
@click.option(
    "--timeout", type=click.FloatRange(1, 600), default=30.0, show_default=True, metavar="S"
)
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def probe(
    ctx: click.Context,
    profile: str | None,
    rules: tuple[str, ...],
    backend: Backend | None,
    mode: Mode,
    proxy_uid: int | None,
    timeout: float,
    output: str,
) -> None:
    """Prove interception works: apply the rules with the mesh's backend, then check that a real TCP
    connection from an application uid is redirected (SO_ORIGINAL_DST) and one from the proxy is
    not. Everything is cleaned up whatever happens. Exit 0 when it passes, 1 when not, 2 on bad input.
    """
    spec = needs_from_options(profile, rules, backend)
    result = run_probe(spec, spec.backend, mode, timeout=timeout, proxy_uid=proxy_uid)
    if output == "json":
        emit_json({"schema": "meshready.io/probe/v1", **result.to_dict()})
    else:
        verdict = "PASS" if result.ok else "FAIL"
        what = spec.profile or ", ".join(spec.rules)
        click.echo(
            f"probe {verdict} ({result.mode.value}, backend {result.backend.value}, {what}) "
            f"in {result.duration_s:.2f}s"
        )
        click.echo(f"  redirected: {_yes(result.redirected)}")
        click.echo(f"  proxy ({result.proxy}) bypassed: {_yes(result.proxy_bypassed)}")
        if result.applied:
            click.echo(f"  rules the kernel accepted: {', '.join(result.applied)}")
        click.echo(f"  {result.detail}")
    ctx.exit(0 if result.ok else 1)


def _yes(value: bool | None) -> str:
    return "not checked" if value is None else ("yes" if value else "no")
