"""Human and JSON rendering shared by the commands. rich is imported only for human output.

Three rules hold for everything printed here:

- shell commands are printed as plain text, flush left, never wrapped by rich or anything else: a
  command longer than the terminal is broken only between words, outside quotes, with `` \\``
  continuations, so pasting it runs exactly the command (``shell_lines``);
- tables have one row per object: cells that do not fit are cut with an ellipsis, never broken
  over lines (``format_table``);
- the width is honest: ``$COLUMNS`` when set, else the terminal's, else (piped) no limit.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import click

from meshready.assess.report import Report, backend_name

ELLIPSIS = "…"
COLUMN_GAP = 3  # as kubectl separates its columns
# A command broken over lines keeps each line at least this long, however narrow the terminal.
MIN_COMMAND_WIDTH = 40

F = TypeVar("F", bound=Callable[..., Any])


def output_option(*formats: str, help_text: str | None = None) -> Callable[[F], F]:
    """The ``-o/--output`` option of a command that prints in one of ``formats``, the first by
    default."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(list(formats)),
        default=formats[0],
        show_default=True,
        help=help_text,
    )


def emit_json(data: Any) -> None:
    """DATA as indented JSON. Every command's object carries ``schema`` (``meshready.io/NAME/vN``,
    described by src/meshready/schemas/NAME.json) and snake_case keys."""
    click.echo(json.dumps(data, indent=2, sort_keys=False))


_CAMEL = re.compile(r"^[a-z][a-z0-9]*([A-Z][A-Za-z0-9]*)+$")


def snake_keys(data: Any) -> Any:
    """DATA with camelCase keys (``bootID``, ``proxyBypassed``: the Node annotation's Kubernetes
    style) in snake_case, for JSON output; data keys such as module names are left alone."""
    if isinstance(data, dict):
        return {
            (re.sub(r"(?<=[a-z0-9])([A-Z]+)", r"_\1", k).lower() if _CAMEL.match(k) else k): (
                snake_keys(v)
            )
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [snake_keys(v) for v in data]
    return data


def terminal_width() -> int | None:
    """$COLUMNS if set to a number, else the terminal's width, else None (not a terminal)."""
    env = os.environ.get("COLUMNS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def console() -> Any:
    """A rich console for prose (never for commands: see print_commands), no highlighting."""
    from rich.console import Console

    width = terminal_width()
    # Piped without $COLUMNS: nothing is cut or wrapped (a file has no width).
    return Console(highlight=False, width=width or 100_000)


# ---------------------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Column:
    header: str
    wide: bool = False  # shown only with -o wide
    shrink: bool = True  # may be cut to fit (the object's name column should not be)
    min_width: int = 0  # never cut below this (header length when 0)


def fit_widths(natural: Sequence[int], columns: Sequence[Column], width: int | None) -> list[int]:
    """Column widths that fit WIDTH: the widest shrinkable column loses a character at a time."""
    widths = list(natural)
    if width is None:
        return widths
    floors = [
        max(c.min_width or len(c.header), 1) if c.shrink else natural[i]
        for i, c in enumerate(columns)
    ]
    floors = [min(f, n) for f, n in zip(floors, natural, strict=True)]
    budget = width - COLUMN_GAP * (len(widths) - 1)
    while sum(widths) > budget:
        candidates = [i for i, w in enumerate(widths) if w > floors[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: (widths[i], i))
        widths[widest] -= 1
    return widths


def cut(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line per row, whatever a message contains
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + ELLIPSIS if width > 0 else ""


def format_table(
    columns: Sequence[Column],
    rows: Iterable[Sequence[str]],
    *,
    width: int | None,
    wide: bool = False,
    headers: bool = True,
) -> list[str]:
    """Lines of a kubectl-style table: one line per row, none longer than WIDTH (when it can be)."""
    keep = [i for i, c in enumerate(columns) if wide or not c.wide]
    shown = [columns[i] for i in keep]
    body = [[" ".join(str(row[i]).split()) for i in keep] for row in rows]
    table = ([[c.header for c in shown]] if headers else []) + body
    if not table:
        return []
    natural = [max(len(r[j]) for r in table) for j in range(len(shown))]
    widths = fit_widths(natural, shown, None if wide else width)
    lines = []
    for row in table:
        cells = [cut(cell, widths[j]) for j, cell in enumerate(row)]
        padded = [c.ljust(widths[j]) for j, c in enumerate(cells[:-1])] + cells[-1:]
        lines.append((" " * COLUMN_GAP).join(padded).rstrip())
    return lines


def print_table(
    columns: Sequence[Column],
    rows: Iterable[Sequence[str]],
    *,
    wide: bool = False,
    headers: bool = True,
) -> None:
    for line in format_table(columns, rows, width=terminal_width(), wide=wide, headers=headers):
        click.echo(line)


# -------------------------------------------------------------------------------------- commands

_PLACEHOLDER = re.compile(r"<[^<>]*[a-z][^<>]*>")


def has_placeholder(command: str) -> bool:
    """``<the failing pod>``: a template for a person, not something a shell can run."""
    return bool(_PLACEHOLDER.search(command))


def split_comment(command: str) -> tuple[str, str]:
    """(command, trailing comment without '#'): a `` # ...`` outside quotes ends the command."""
    for i in _unquoted(command):
        if command[i] == "#" and (i == 0 or command[i - 1] in " \t"):
            return command[:i].rstrip(), command[i + 1 :].strip()
    return command, ""


def _break_points(command: str) -> list[int]:
    """Indexes of blanks outside quotes where sh would also split words."""
    return [i for i in _unquoted(command) if command[i] == " " and i > 0 and command[i - 1] != " "]


def _unquoted(command: str) -> Iterator[int]:
    """Indexes of the characters sh reads outside quotes and not escaped by a backslash."""
    quote = ""
    escaped = False
    for i, ch in enumerate(command):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        else:
            yield i


_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_.]*)\2")


def shell_lines(command: str, width: int | None) -> list[str]:
    """COMMAND as lines to paste, each at most WIDTH long where a break is possible: logical lines
    (``\\`` continuations joined) are re-broken between words, outside quotes, with ``\\``
    continuations; heredoc bodies are copied exactly."""
    lines = command.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        logical = lines[i]
        while logical.endswith("\\") and not logical.endswith("\\\\") and i + 1 < len(lines):
            i += 1
            logical = f"{logical[:-1].rstrip()} {lines[i].strip()}"
        out.extend(_break_line(logical, width))
        i += 1
        for dash, _quote_char, delimiter in _HEREDOC.findall(logical):
            while i < len(lines):
                body = lines[i]
                out.append(body)
                i += 1
                if (body.lstrip("\t") if dash else body) == delimiter:
                    break
    return out


def _break_line(command: str, width: int | None) -> list[str]:
    if width is None or len(command) <= width:
        return [command]
    limit = max(width, MIN_COMMAND_WIDTH) - 2  # room for " \\"
    bounds = [0, *_break_points(command), len(command)]
    words = [command[a:b].strip() for a, b in itertools.pairwise(bounds)]
    lines: list[str] = []
    current = ""
    for word in filter(None, words):
        indent = "  " if lines else ""
        candidate = f"{current} {word}" if current else word
        if current and len(indent + candidate) > limit:
            lines.append(f"{indent}{current} \\")
            current = word
        else:
            current = candidate
    lines.append(("  " if lines else "") + current)
    return lines


class Runnable(Protocol):
    """A fix step as the diagnose engine gives it (diagnose.model.Command): the command apart from
    its prose, and the shell variables it expects (``POD``, ``NAMESPACE``)."""

    @property
    def run(self) -> str: ...

    @property
    def purpose(self) -> str: ...

    @property
    def needs(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Shell:
    run: str
    purpose: str = ""
    needs: tuple[str, ...] = ()


Item = str | Runnable


def as_shell(item: Item) -> Shell:
    """A step from a Command, or from a plain command line (a trailing ``# comment`` is its
    purpose)."""
    if isinstance(item, str):
        body, comment = split_comment(item)
        return Shell(body, comment)
    return Shell(item.run, item.purpose, tuple(item.needs))


def is_template(item: Item) -> bool:
    return has_placeholder(as_shell(item).run)


_VAR = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._/:@=+-]+$")


def _quote(value: str) -> str:
    return value if _SAFE_VALUE.match(value) else "'" + value.replace("'", "'\\''") + "'"


def comment_lines(text: str, width: int | None) -> list[str]:
    """TEXT as ``# `` lines that fit WIDTH: a comment the terminal wraps would paste as a
    command."""
    import textwrap

    text = " ".join(text.split())
    if width is None:
        return [f"# {text}"]
    return textwrap.wrap(
        text,
        width=max(width, MIN_COMMAND_WIDTH),
        initial_indent="# ",
        subsequent_indent="# ",
        break_long_words=True,
        break_on_hyphens=False,
    )


def command_block(
    items: Sequence[Item],
    width: int | None,
    bindings: Sequence[dict[str, str]] = (),
) -> list[str]:
    """Lines to paste: each step's purpose as comments, a guard for the variables it needs (or,
    with BINDINGS, the command once per set of values), then the command itself."""
    out: list[str] = []
    for item in items:
        step = as_shell(item)
        if not step.run:
            continue
        needs = [n for n in step.needs if _VAR.match(n)]
        if step.purpose:
            out.extend(comment_lines(step.purpose, width))
        usable = [b for b in bindings if all(n in b for n in needs)] if needs else []
        if needs and usable:
            for binding in usable:
                out.append(" ".join(f"{n}={_quote(binding[n])}" for n in needs))
                out.extend(shell_lines(step.run, width))
            continue
        if needs:  # unset: the shell stops with "NAME: parameter not set"
            out.extend(shell_lines(": " + " ".join(f'"${{{n}:?}}"' for n in needs), width))
        out.extend(shell_lines(step.run, width))
    return out


def print_commands(
    heading: str,
    items: Sequence[Item],
    indent: str = "",
    bindings: Sequence[dict[str, str]] = (),
) -> None:
    """HEADING, a blank line, the commands flush left (so a heredoc stays exact), a blank line.
    Old-style templates (``<the failing pod>``) are prose, never pasted."""
    runnable = [c for c in items if not is_template(c)]
    templates = [as_shell(c) for c in items if is_template(c)]
    if runnable:
        click.echo(f"{indent}{heading}")
        click.echo("")
        for line in command_block(runnable, terminal_width(), bindings):
            click.echo(line)
        click.echo("")
    for template in templates:
        why = f" ({template.purpose})" if template.purpose else ""
        click.echo(f"{indent}then, filling in the <...>{why}: {template.run}")


def _without_sudo(command: str) -> str:
    """The script runs as root, and some node images (Talos, COS, Bottlerocket) have no sudo."""
    return re.sub(r"(^|[|;&]\s*)sudo\s+", r"\1", command)


def fix_script(
    items: Sequence[Item], header: Sequence[str] = (), bindings: Sequence[dict[str, str]] = ()
) -> str:
    """One POSIX sh script, run as root: stops at the first failing command; templates only as
    comments; variables a step needs must be set (``: "${POD:?...}"``) unless BINDINGS give them."""
    lines = ["#!/bin/sh", *(f"# {' '.join(h.split())}" for h in header), "set -eu", ""]
    for item in items:
        step = as_shell(item)
        if has_placeholder(step.run):
            lines.append(f"# not run (fill in and run by hand): {' '.join(step.run.split())}")
            continue
        lines.extend(
            command_block(
                [Shell(_without_sudo(step.run), step.purpose, step.needs)], None, bindings
            )
        )
    return "\n".join(lines) + "\n"


def print_prose(text: str, indent: str = "", hang: str = "") -> None:
    """A paragraph, wrapped at the terminal's width (not at all when piped), indented; lines
    after the first get HANG more (under the text of a "- " item)."""
    import textwrap

    width = terminal_width()
    if width is None:
        click.echo(f"{indent}{' '.join(text.split())}")
        return
    for line in textwrap.wrap(
        text,
        width=max(width, 40),
        initial_indent=indent,
        subsequent_indent=indent + hang,
        break_long_words=False,
        break_on_hyphens=False,
    ):
        click.echo(line)


# --------------------------------------------------------------------------------------- reports


_RULE_PLACE = re.compile(r"^\S+:\d+ ")  # "FILE:LINE " before what the rule uses


def needed_by_words(needed_by: Sequence[str]) -> str:
    """What needs a module, as the rules spell it (``-j REDIRECT``, ``*nat``), each once; not the
    rule file and line (``-v`` and ``-o json`` have those)."""
    words: list[str] = []
    deps: list[str] = []
    for item in needed_by:
        if item.startswith("dependency of "):
            deps.append(item.removeprefix("dependency of ").strip())
            continue
        what = _RULE_PLACE.sub("", item).strip()
        what = re.sub(r"\s*\([^()]*\)$", "", what)  # "iptables-legacy itself (x_tables ...)"
        if what and what not in words:
            words.append(what)
    if not words and deps:
        return "dep of " + ", ".join(deps)
    return ", ".join(words)


def render_report(report: Report, verbose: bool = False, machine: str | None = None) -> None:
    """The module table, each distinct explanation once (numbered), notes, the verdict line."""
    out = console()
    from rich.markup import escape

    k = report.kernel
    where = f"{machine}: " if machine else ""
    print_prose(
        f"{where}kernel {k.release or '?'} ({k.arch or '?'}, {k.source}), backend "
        f"{backend_name(report.backend)}, rules {report.profile or ', '.join(report.rules)}",
        hang="  ",
    )
    details: list[str] = []

    def ref(detail: str) -> str:
        if not detail:
            return ""
        if detail not in details:
            details.append(detail)
        return f"[{details.index(detail) + 1}]"

    rows: list[list[str]] = []
    hidden = 0
    for m in report.modules:
        if not verbose and m.state.ok and not m.direct:
            hidden += 1
            continue
        needed = needed_by_words(m.needed_by) or ", ".join(m.requests)
        rows.append([m.name, m.state.value, needed, ref(m.detail) if not m.state.ok else ""])
    for u in report.unresolved:
        rows.append([f"({u.request})", "absent", needed_by_words(u.needed_by), ref(u.detail)])
    columns: tuple[Column, ...] = (
        Column("MODULE", shrink=False),
        Column("STATE", shrink=False),
        Column("NEEDED BY", min_width=12),
        Column("NOTE", shrink=False),
    )
    if not details:
        columns = columns[:3]
        rows = [r[:3] for r in rows]
    print_table(columns, rows)
    if hidden and not verbose:
        out.print(f"[dim]({hidden} dependencies loaded or built in not shown; -v shows all)[/]")
    for n, detail in enumerate(details, start=1):
        print_prose(f"[{n}] {detail}", hang="    ")
    for note in report.notes:
        print_prose(f"- {note}", hang="  ")
    head, _, rest = report.summary.partition(": ")
    style = "green" if report.ready else "red"
    out.print(f"[bold {style}]{escape(head.upper())}[/]: {escape(rest)}")
