"""Fix commands are paste-safe: each is one logical POSIX shell command that sh parses as is,
carries no prose, no comment and no <placeholder>, and names the variables it needs."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from meshready.diagnose import fixes
from meshready.diagnose.engine import diagnose_text
from meshready.diagnose.model import Command, DiagnoseContext, Where
from meshready.knowledge.requests import Backend

from .conftest import LOGS, read_log


def _all_commands() -> list[tuple[str, Command]]:
    out: list[tuple[str, Command]] = []
    for path in sorted(LOGS.glob("*.log")):
        for ctx in (None, DiagnoseContext(container="istio-init", absent_modules=("ip_tables",))):
            for finding in diagnose_text(read_log(path.name), path.stem, ctx).findings:
                for cmd in (*finding.fix.steps, *finding.fix.meshready_steps):
                    out.append((f"{path.stem}/{finding.cause}", cmd))
    return out


COMMANDS = _all_commands()
SH = shutil.which("sh")


def test_every_cause_in_the_corpus_has_commands() -> None:
    assert len({where.split("/")[1] for where, _ in COMMANDS}) >= 14


def test_sh_parses_every_command_as_written() -> None:
    # The real shell, not a reading of it: `sh -n` parses without running.
    assert SH is not None, "sh is missing: install dash (scripts/apt-packages.txt)"
    seen = sorted({cmd.run for _, cmd in COMMANDS})
    for run in seen:
        done = subprocess.run([SH, "-n", "-c", run], capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, (run, done.stderr)


UNIQUE = sorted({cmd.run: (where, cmd) for where, cmd in COMMANDS}.values(), key=lambda x: x[1].run)


@pytest.mark.parametrize("where,cmd", UNIQUE)
def test_command_shape(where: str, cmd: Command) -> None:
    run = cmd.run
    assert cmd.purpose and cmd.where in (Where.NODE, Where.CLUSTER)
    assert not re.search(r"(?:^|\s)#", run), (where, run)  # prose lives in purpose
    assert not re.search(r"<[a-z][^<>\n]*>", run), (where, run)  # no <placeholders>
    used = set(re.findall(r"\$\{?([A-Z][A-Z_]*)", run))
    assert used <= set(cmd.needs), (where, run, cmd.needs)
    body = run.split("<<'EOF'\n", 1)
    logical = body[0].splitlines()
    for line in logical[:-1]:
        assert line.endswith(" \\"), (where, run)  # only `\` continuations join lines
    for line in run.splitlines():
        assert len(line) <= 80, (where, line)
    if len(body) == 2:
        assert body[1].endswith("\nEOF") or body[1] == "EOF", (where, run)


def test_long_module_lists_continue_at_word_boundaries() -> None:
    mods = tuple(f"xt_module_{i}" for i in range(20))
    fix = fixes.load_modules(mods, Backend.LEGACY, "istio-sidecar", selinux=False)
    modprobe = fix.steps[0].run
    assert " \\\n    " in modprobe
    assert modprobe.replace(" \\\n    ", " ").split() == ["sudo", "modprobe", "-a", *mods]
    tee = fix.steps[1].run
    assert tee.endswith("EOF") and all(m in tee.splitlines() for m in mods)


def test_module_names_from_a_log_are_checked_before_reaching_a_command() -> None:
    fix = fixes.load_modules(
        ("ip_tables", "x;rm -rf /", "$(reboot)", "iptable_nat"), None, None, False
    )
    assert "rm" not in fix.steps[0].run and "reboot" not in fix.steps[0].run
    assert fix.modules_load_conf == "ip_tables\niptable_nat\n"


def test_commands_are_the_runs_of_the_steps() -> None:
    finding = diagnose_text(read_log("istio-28897-rhel8-legacy.log"), "x").findings[0]
    assert finding.fix.commands == tuple(c.run for c in finding.fix.steps)
    data = finding.fix.to_dict()
    assert data["commands"] == [s["run"] for s in data["steps"]]
    assert {s["where"] for s in data["steps"]} <= {"node", "cluster"}


def test_the_modprobe_step_loads_every_module_of_the_finding() -> None:
    checked = 0
    for path in sorted(LOGS.glob("*.log")):
        for finding in diagnose_text(read_log(path.name), path.stem).findings:
            loads = [c.run for c in finding.fix.steps if "modprobe -a" in c.run]
            if not loads or finding.cause == "rule-rejected":
                continue
            words = loads[0].replace(" \\\n    ", " ").split()
            assert words[3:] == list(finding.modules), (path.stem, words, finding.modules)
            checked += 1
    assert checked >= 30
