"""Options whose values are an enum's: users see the values, commands get the members."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import click
import pytest
from click.testing import CliRunner

from meshready.actions.bootstrap import BootstrapProvider
from meshready.actions.loader import LoaderKind
from meshready.agent.work import AgentLoader, AgentProbeMode
from meshready.cli.choices import enum_choice
from meshready.knowledge.requests import Backend
from tests.conftest import CliResult


def _command(option_type: click.ParamType, seen: list[Any]) -> click.Command:
    @click.command()
    @click.option("--backend", type=option_type, help="the backend")
    def command(backend: Any) -> None:
        seen.append(backend)

    return command


def test_help_and_errors_are_those_of_a_choice_of_the_values() -> None:
    runner = CliRunner()
    by_enum = _command(enum_choice(Backend), [])
    by_values = _command(click.Choice([b.value for b in Backend]), [])
    for args in (["--help"], ["--backend", "bad"], ["--backend", "NFT"], ["--backend"]):
        ours, theirs = runner.invoke(by_enum, args), runner.invoke(by_values, args)
        assert (ours.exit_code, ours.output) == (theirs.exit_code, theirs.output), args
    assert "[legacy|nft|nftables]" in runner.invoke(by_enum, ["--help"]).output


def test_the_command_receives_the_member() -> None:
    seen: list[Any] = []
    result = CliRunner().invoke(_command(enum_choice(Backend), seen), ["--backend", "nftables"])
    assert result.exit_code == 0, result.output
    assert seen == [Backend.NFTABLES] and seen[0] is Backend.NFTABLES
    seen.clear()
    CliRunner().invoke(_command(enum_choice(Backend), seen), [])
    assert seen == [None]


def test_a_default_given_as_its_value_reaches_the_command_as_the_member() -> None:
    class Colour(StrEnum):
        RED = "red"
        BLUE = "blue"

    seen: list[Any] = []

    @click.command()
    @click.option("--colour", type=enum_choice(Colour), default="blue", show_default=True)
    def command(colour: Colour) -> None:
        seen.append(colour)

    assert CliRunner().invoke(command, []).exit_code == 0
    assert seen == [Colour.BLUE] and seen[0] is Colour.BLUE
    assert "[default: blue]" in CliRunner().invoke(command, ["--help"]).output


@pytest.mark.parametrize(
    ("argv", "option", "values"),
    [
        (("check", "--backend", "bad"), "--backend", Backend),
        (("needs", "--backend", "bad"), "--backend", Backend),
        (("fix", "--backend", "bad"), "--backend", Backend),
        (("diagnose", "--backend", "bad"), "--backend", Backend),
        (("render", "manifests", "--backend", "bad"), "--backend", Backend),
        (("render", "bootstrap", "--provider", "bad"), "--provider", BootstrapProvider),
        (("fix", "--loader", "bad"), "--loader", LoaderKind),
        (("agent", "--loader", "bad"), "--loader", AgentLoader),
        (("agent", "--probe-mode", "bad"), "--probe-mode", AgentProbeMode),
    ],
)
def test_a_bad_value_is_a_usage_error_listing_the_values(
    run_cli: Any, argv: tuple[str, ...], option: str, values: type[StrEnum]
) -> None:
    result: CliResult = run_cli(*argv)
    listed = ", ".join(f"'{v.value}'" for v in values)
    assert result.code == 2
    assert result.err.endswith(
        f"Error: Invalid value for '{option}': 'bad' is not one of {listed}.\n"
    )
    assert result.out == ""
