#!/usr/bin/env python3
"""Measure, inside the guest, what the kernel is asked while iptables rules are applied, per iptables
version, and which unanswered requests are fatal and which only warn.

Usage: measure_iptables.py [--backend nft|legacy ...] [--version V ...] [--atoms] [--files]
                           [--only FILE-ID ...]

kernel.modprobe points at a shim (/run/modprobe-shim) that logs every request the kernel makes and
refuses the ones resolving to a module listed in /run/modprobe.deny. Everything runs in a pod
(new network and mount namespaces, /usr/lib/modules hidden), with the iptables of each Debian release
the guest carries (tests/vm/guest/mrguest.py, iptables_userlands).

--atoms: one rule per extension usage (tests/vm/guest/iptables_atoms.py) in a user chain of its
  table, from a clean state (every netfilter module unloaded): the requests it makes; then for each
  module those requests loaded, the same rule with that module refused (unloaded first): exit code
  and what iptables printed. One `MEASURE {json}` line per atom.
--files: every shared rules file and every profile's files, from a clean state: the requests and the
  loaded set; then once more with every module refused whose absence only warned for one of the
  atoms the file uses (a check that those are recommended, not required, in this file's context).
  One `MEASURE {json}` line per file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, "/meshready-vm/guest")
from iptables_atoms import ATOMS, Atom, atom_rules
from mrguest import (
    Modules,
    Report,
    apply_in_pod,
    ensure_owner_names,
    iptables_userlands,
    rule_files,
    rule_id,
    sh,
)

SHIM = Path("/run/modprobe-shim")
LOG = Path("/run/modprobe.log")
DENY = Path("/run/modprobe.deny")
SHIM_TEXT = """#!/bin/sh
# the kernel runs: modprobe -q -- NAME
for a; do name=$a; done
if [ -s /run/modprobe.deny ]; then
  for m in $(/sbin/modprobe -R "$name" 2>/dev/null); do
    if grep -qx "$m" /run/modprobe.deny; then echo "DENIED $name" >> /run/modprobe.log; exit 1; fi
  done
fi
echo "$name" >> /run/modprobe.log
exec /sbin/modprobe "$@"
"""


def install_shim() -> None:
    SHIM.write_text(SHIM_TEXT)
    SHIM.chmod(0o755)
    Path("/proc/sys/kernel/modprobe").write_text(str(SHIM) + "\n")


def resolve(request: str) -> list[str]:
    out = sh(["/sbin/modprobe", "-R", request])
    return out.stdout.split() if out.returncode == 0 else []


class Trial:
    def __init__(self, mods: Modules, rules: Path, backend: str, version: str, deny: set[str]):
        before = mods.loaded()
        LOG.write_text("")
        DENY.write_text("".join(m + "\n" for m in sorted(deny)))
        res = apply_in_pod(rules, backend, version)
        log = LOG.read_text().split("\n")
        self.requests = [x for x in log if x and not x.startswith("DENIED ")]
        self.denied = [x[7:] for x in log if x.startswith("DENIED ")]
        self.loaded = sorted(mods.loaded() - before)
        self.exit = res.returncode
        self.output = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()][:12]

    def as_dict(self) -> dict[str, object]:
        return {
            "exit": self.exit,
            "requests": self.requests,
            "denied": self.denied,
            "loaded": self.loaded,
            "output": self.output,
        }


def direct_modules(requests: list[str]) -> dict[str, list[str]]:
    """module -> the requests that resolved to it."""
    out: dict[str, list[str]] = {}
    for r in requests:
        for m in resolve(r):
            out.setdefault(m, [])
            if r not in out[m]:
                out[m].append(r)
    return out


def rules_file(work: Path, atom: Atom, base_only: bool = False) -> Path:
    # the file name tells apply_command the family
    f = work / f"{atom.id.replace('.', '-')}{'-base' if base_only else ''}.{atom.family}.rules"
    f.write_text(atom_rules(atom, base_only))
    return f


def measure_atom(
    mods: Modules, atom: Atom, backend: str, version: str, work: Path, t_base: Trial
) -> dict:
    rules = rules_file(work, atom)
    t0 = Trial(mods, rules, backend, version, set())
    result: dict[str, object] = {
        "kind": "atom",
        "id": atom.id,
        "family": atom.family,
        "table": atom.table,
        "rule": atom.rule,
        "backend": backend,
        "iptables": version,
        "base": t_base.as_dict(),
        "all": t0.as_dict(),
    }
    direct = direct_modules(t0.requests)
    without: dict[str, object] = {}
    for m in sorted(direct):
        gone = {m} | {d for d in mods.loaded() if m in mods.deps.get(d, [])}
        mods.rmmod(sorted(gone))
        t = Trial(mods, rules, backend, version, {m})
        without[m] = {**t.as_dict(), "for": direct[m]}
        mods.insmod(mods.order(gone & set(mods.path)))
    result["without"] = without
    mods.rmmod(t0.loaded)  # back to the table's base for the next atom
    return result


def measure_file(
    mods: Modules, f: Path, name: str, backend: str, version: str, warn_only: set[str]
) -> dict:
    mods.unload_all()
    if backend == "legacy":  # the iptables-legacy binary loads its core module itself, outside pods
        core = "ip6_tables" if f.name.endswith(".v6.rules") else "ip_tables"
        mods.insmod(mods.order({core, *mods.deps.get(core, [])}))
    t0 = Trial(mods, f, backend, version, set())
    direct = direct_modules(t0.requests)
    result: dict[str, object] = {
        "kind": "file",
        "id": name,
        "backend": backend,
        "iptables": version,
        "all": t0.as_dict(),
        "direct": {m: direct[m] for m in sorted(direct)},
    }
    # Which of the candidates (modules whose absence only warned for an atom) can this file do
    # without? All at once first; if that fails, one at a time, then the survivors together.
    candidates = sorted(set(direct) & warn_only)
    trials: list[dict[str, object]] = []

    def refuse(names: list[str]) -> Trial:
        gone = set(names)
        for m in names:
            gone |= {d for d in mods.loaded() if m in mods.deps.get(d, [])}
        mods.rmmod(sorted(gone))
        t = Trial(mods, f, backend, version, set(names))
        trials.append({"refused": names, **t.as_dict()})
        mods.insmod(mods.order(gone & set(mods.path)))
        return t

    recommended: list[str] = []
    # nft_compat also carries the file's other matches and targets: try without it second.
    tries = [candidates, [m for m in candidates if m != "nft_compat"]]
    for names in tries:
        if names and refuse(names).exit == 0:
            recommended = names
            break
    else:
        if len(candidates) > 1:
            alone = [m for m in candidates if refuse([m]).exit == 0]
            if len(alone) > 1 and refuse(alone).exit != 0:
                alone = []
            recommended = alone
    result["recommended"] = recommended
    result["refusals"] = trials
    return result


def profile_files() -> list[tuple[str, Path]]:
    from importlib import resources

    base = Path(str(resources.files("meshready.knowledge").joinpath("data", "profiles")))
    return [(f"profile/{p.name}", p) for p in sorted(base.glob("*.rules"))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", action="append", choices=["nft", "legacy"])
    ap.add_argument("--version", action="append", help="iptables version (default: every one)")
    ap.add_argument("--atoms", action="store_true")
    ap.add_argument("--files", action="store_true")
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--warn-only", default="", help="modules to refuse in --files (comma list)")
    args = ap.parse_args()
    r = Report()
    mods = Modules()
    install_shim()
    versions = args.version or sorted(
        iptables_userlands(), key=lambda v: [int(x) for x in v.split(".")]
    )
    r.check(
        "setup/userlands",
        all(v in iptables_userlands() for v in versions),
        str(iptables_userlands()),
    )
    work = Path("/run/measure")
    work.mkdir(exist_ok=True)
    files = [(f"sidecar-iptables/{p.name}", p) for p in rule_files("nft")] + profile_files()
    if args.only:
        files = [(n, p) for n, p in files if rule_id(p) in args.only or n in args.only]
    ensure_owner_names([p for _, p in files])
    for backend in args.backend or ["nft"]:
        for version in versions:
            t0 = time.monotonic()
            warn_only: set[str] = {m for m in args.warn_only.split(",") if m}
            if args.atoms and backend == "nft":
                group = ("", "")
                t_base: Trial | None = None
                for atom in ATOMS:
                    if (atom.family, atom.table) != group or t_base is None:
                        group = (atom.family, atom.table)
                        mods.unload_all()
                        t_base = Trial(mods, rules_file(work, atom, True), backend, version, set())
                    res = measure_atom(mods, atom, backend, version, work, t_base)
                    print("MEASURE " + json.dumps(res), flush=True)
                    r.check(
                        f"atom/{backend}/{version}/{atom.id}",
                        res["all"]["exit"] == 0,  # type: ignore[index]
                        "does not apply with autoload on",
                        "\n".join(res["all"]["output"]),
                    )  # type: ignore[index]
                    for m, t in res["without"].items():  # type: ignore[union-attr]
                        if t["exit"] == 0:
                            warn_only.add(m)
            if args.files:
                for name, f in files:
                    res = measure_file(mods, f, name, backend, version, warn_only)
                    print("MEASURE " + json.dumps(res), flush=True)
                    r.check(
                        f"file/{backend}/{version}/{name}",
                        res["all"]["exit"] == 0,  # type: ignore[index]
                        "does not apply with autoload on",
                        "\n".join(res["all"]["output"]),
                    )  # type: ignore[index]
            r.note(f"{backend} {version}: {time.monotonic() - t0:.0f}s")
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
