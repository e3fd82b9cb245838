"""Tables that fit the terminal and commands that paste: the rendering rules of cli.output."""

from __future__ import annotations

import subprocess

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from meshready.cli.output import (
    ELLIPSIS,
    Column,
    command_block,
    fix_script,
    format_table,
    output_option,
    shell_lines,
    split_comment,
    terminal_width,
)
from meshready.cli.status import COLUMNS as STATUS_COLUMNS

ROWS = [
    (
        f"worker-pool-a-{i:03d}.eu-frankfurt-1.internal.example.com",
        "false",
        "ModulesNotLoaded",
        "running",
        "ip_tables iptable_nat xt_REDIRECT xt_owner xt_multiport",
        "3m",
        "legacy",
        "5.15.0-100.96.32.el8uek.aarch64",
        "8 modules not loaded: ip_tables, iptable_nat, ...",
    )
    for i in range(3)
]


@pytest.mark.parametrize("width", [60, 100, 200])
def test_status_table_fits_one_row_per_node(width: int) -> None:
    lines = format_table(STATUS_COLUMNS, ROWS, width=width)
    assert len(lines) == 1 + len(ROWS)  # a header and one line per node, never more
    for line, row in zip(lines[1:], ROWS, strict=True):
        assert line.startswith(row[0])  # the node's name is never cut
    if width >= 200:
        assert ELLIPSIS not in "".join(lines)
    else:
        assert ELLIPSIS in "".join(lines)  # cut, not broken over lines
    assert "KERNEL" not in lines[0]  # -o wide only
    # Names of an ordinary length: every line within the width.
    short = [(f"node-{i}", *row[1:]) for i, row in enumerate(ROWS)]
    lines = format_table(STATUS_COLUMNS, short, width=width)
    assert len(lines) == 1 + len(short) and all(len(line) <= width for line in lines)


def test_wide_shows_everything_and_no_headers_drops_the_header() -> None:
    wide = format_table(STATUS_COLUMNS, ROWS, width=60, wide=True)
    assert "KERNEL" in wide[0] and "5.15.0-100.96.32.el8uek.aarch64" in wide[1]
    assert ELLIPSIS not in "".join(wide)  # wide is for reading everything: nothing is cut
    bare = format_table(STATUS_COLUMNS, ROWS, width=100, headers=False)
    assert len(bare) == len(ROWS) and bare[0].startswith("worker-pool-a-000")


def test_terminal_width_is_honest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "77")
    assert terminal_width() == 77
    monkeypatch.delenv("COLUMNS")
    assert terminal_width() is None  # pytest captures stdout: not a terminal, no limit


def test_cells_with_newlines_stay_on_their_row() -> None:
    lines = format_table((Column("A", shrink=False), Column("B")), [("x", "one\ntwo")], width=80)
    assert lines == ["A   B", "x   one two"]


def test_split_comment_respects_quotes() -> None:
    assert split_comment("echo '#not' # yes") == ("echo '#not'", "yes")
    assert split_comment('echo "a # b"') == ('echo "a # b"', "")
    assert split_comment("echo a#b") == ("echo a#b", "")


def test_long_command_breaks_between_words_never_in_quotes() -> None:
    command = "printf '%s\\n' " + " ".join(f"mod{i}" for i in range(30)) + " | tee '/a b/c'"
    lines = shell_lines(command, 40)
    assert all(len(line) <= 40 for line in lines)
    assert all(line.endswith(" \\") for line in lines[:-1])
    assert "'/a b/c'" in lines[-1] and "'%s\\n'" in lines[0]


def test_heredoc_body_is_copied_exactly() -> None:
    command = "sudo tee /etc/x.conf >/dev/null <<'EOF'\n  indented\nlong " + "x" * 80 + "\nEOF"
    lines = shell_lines(command, 30)
    assert lines[-3:] == ["  indented", "long " + "x" * 80, "EOF"]


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-./=", min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(words=st.lists(_WORD, min_size=1, max_size=25), width=st.integers(20, 120))
def test_broken_commands_mean_the_same_to_sh(words: list[str], width: int) -> None:
    """Whatever the width, sh sees the same words in a broken command as in the original."""
    quoted = ["'" + w + "'" if i % 3 == 0 else w for i, w in enumerate(words)]
    command = "printf '%s\\n' " + " ".join(quoted)
    once = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    broken = "\n".join(shell_lines(command, width))
    again = subprocess.run(["sh", "-c", broken], capture_output=True, text=True, check=True)
    assert again.stdout == once.stdout


def test_purposes_become_comments_that_fit_and_templates_are_not_pasted() -> None:
    block = command_block(["modprobe -a ip_tables  # " + "why " * 30], 50)
    comments = [line for line in block if line.startswith("#")]
    assert len(comments) > 1 and all(len(line) <= 50 for line in comments)
    assert block[-1] == "modprobe -a ip_tables"
    script = fix_script(["sudo modprobe -a x", "kubectl delete pod <the failing pod>"])
    assert "\nmodprobe -a x\n" in script
    assert "# not run (fill in and run by hand): kubectl delete pod <the failing pod>" in script


@click.command()
@output_option("table", "wide", "json", help_text="wide: more columns")
def _printer(output: str) -> None:
    click.echo(output)


def test_output_option_defaults_to_the_first_format_and_takes_only_the_given_ones() -> None:
    runner = CliRunner()
    assert runner.invoke(_printer, []).output == "table\n"
    assert runner.invoke(_printer, ["-o", "wide"]).output == "wide\n"
    assert runner.invoke(_printer, ["--output", "json"]).output == "json\n"
    bad = runner.invoke(_printer, ["-o", "yaml"])
    assert bad.exit_code == 2
    assert "'yaml' is not one of 'table', 'wide', 'json'" in bad.output
    assert "wide: more columns  [default: table]" in runner.invoke(_printer, ["--help"]).output
