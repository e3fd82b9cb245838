#!/usr/bin/env python3
"""Scenario 2, run inside the guest: what `meshready needs` derives is complete and minimal.

Usage: scenario_minimal.py --backend legacy|nft|nftables [--backend ...] [--iptables V ...]
                           [--sample] [--modes off,on] [FILE-ID ...]

For every rule file (sidecar-iptables/*.rules with iptables-legacy-restore / ip6tables-legacy-restore,
or, for nft, with iptables-nft-restore / ip6tables-nft-restore of each iptables version given with
--iptables (default: every one the guest has), plus every profile's files; or sidecar-nft/*.nft with
nft -f), meshready derives the module set for this kernel (`needs --iptables-version V` for nft:
the required set and the recommended one, whose absence only makes iptables warn). Check ids of
the nft backend carry the version: complete/<file>@<version>. Then, with the mode the guest was
booted with:

autoload off (kernel.modprobe points nowhere):
  complete/<file>               load exactly the derived set (insmod, in meshready's load order);
                                the loaded set equals it; the file applies in a pod. For nft:
                                exactly the required set, and iptables prints the warning
                                meshready names for each recommended module left out.
  minimal/<file>/without-<mod>  for each module the rules need directly, load the derived sets of
                                every file needing it directly, minus that module (and what cannot
                                load without it): the file must fail to apply in a pod. Failing with
                                more modules loaded implies failing with only the file's own set.
autoload on (kernel.modprobe works, as on most nodes):
  autoload/<file>               from nothing loaded (legacy: only ip_tables / ip6_tables, which the
                                iptables binary loads itself outside a pod), the file applies in a
                                pod and the kernel autoloads exactly the derived set (nft: every
                                required module, and nothing outside required + recommended).

Files with the same derived set share one load; states are visited in an order that keeps the
number of rmmod calls (about 1 s each under emulation) low. --sample keeps one file per distinct
derived set (per iptables version; profile files are always kept). --modes runs the autoload
modes in turn in one boot (default: the boot's mode).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

sys.path.insert(0, "/meshready-vm/guest")
from mrguest import (
    Modules,
    Report,
    apply_in_pod,
    autoload_on,
    ensure_owner_names,
    iptables_userlands,
    meshready_inprocess,
    needs,
    rule_files,
    rule_id,
    set_autoload,
    tail,
)


@dataclass
class Plan:
    file: Path
    backend: str
    order: list[str]  # what to load: the required set (legacy, nftables: everything derived)
    direct: list[str]
    unresolved: list[str]
    version: str | None = None  # iptables version (nft backend)
    everything: list[str] = field(default_factory=list)  # required + recommended, load order
    warnings: list[str] = field(default_factory=list)  # of the recommended modules
    profile: bool = False

    @property
    def id(self) -> str:
        return rule_id(self.file) + (f"@{self.version}" if self.version else "")

    def apply(self) -> subprocess.CompletedProcess[str]:
        return apply_in_pod(self.file, self.backend, self.version)


@dataclass
class State:
    kind: str  # complete | without
    target: frozenset[str]
    order: list[str] | None
    files: list[Plan]
    left_out: str = ""
    extra_left_out: list[str] = field(default_factory=list)


def needs_nft(f: Path, version: str) -> dict[str, object]:
    """`meshready needs --backend nft --iptables-version V -o json --rules F` (in process)."""
    args = ["needs", "--backend", "nft", "--iptables-version", version, "-o", "json", "--rules"]
    code, out, err = meshready_inprocess([*args, str(f)])
    if code != 0:
        raise RuntimeError(f"meshready {' '.join(args)} {f} exited {code}: {err.strip()}")
    data = json.loads(out)
    if not isinstance(data, dict):
        raise RuntimeError(f"meshready needs: not a JSON object: {out[:200]}")
    return data


def plan_nft(f: Path, version: str) -> Plan:
    data = needs_nft(f, version)
    mods = {str(m["name"]): m for m in data["modules"]}  # type: ignore[union-attr]
    builtin = {n for n, m in mods.items() if m.get("builtin")}
    everything = [str(m) for m in data["load_order"]]  # type: ignore[union-attr]
    required = [m for m in everything if mods[m].get("need") == "required"]
    rec_direct = [str(m) for m in data.get("recommended", [])]  # type: ignore[union-attr]
    # one module can answer several warnings (xt_tcpudp: tcp and udp), joined with "; "
    warnings = sorted(
        {
            w
            for m in rec_direct
            if mods[m].get("warning")
            for w in str(mods[m]["warning"]).split("; ")
        }
    )
    if data.get("iptables", {}).get("measured_as") is None:  # type: ignore[union-attr]
        raise RuntimeError(f"needs says nothing about the iptables version: {data.get('iptables')}")
    return Plan(
        f,
        "nft",
        required,
        [str(m) for m in data.get("required", []) if m not in builtin],  # type: ignore[union-attr]
        [str(u) for u in data.get("unresolved", [])],  # type: ignore[union-attr]
        version,
        everything,
        warnings,
    )


def derive(files: list[Path], backend: str, r: Report, version: str | None = None) -> list[Plan]:
    plans = []
    for f in files:
        fid = rule_id(f) + (f"@{version}" if version else "")
        try:
            if backend == "nft" and version is not None:
                plan = plan_nft(f, version)
            else:
                data = needs([f], backend)
                builtin = {m["name"] for m in data.get("modules", []) if m.get("builtin")}
                plan = Plan(
                    f,
                    backend,
                    [str(m) for m in data.get("load_order", [])],
                    [str(m) for m in data.get("direct", []) if m not in builtin],
                    [str(u) for u in data.get("unresolved", [])],
                )
        except (RuntimeError, ValueError, KeyError) as exc:
            r.check(f"needs/{fid}", False, str(exc))
            continue
        plan.profile = f.parent.name == "profiles"
        ok = not plan.unresolved and bool(plan.order) and set(plan.direct) <= set(plan.order)
        r.check(
            f"needs/{fid}",
            ok,
            "unresolved requests, empty load order, or direct modules outside the load order",
            json.dumps(
                {"load_order": plan.order, "direct": plan.direct, "unresolved": plan.unresolved}
            ),
        )
        if ok:
            plans.append(plan)
    return plans


def closure_of_dependents(mods: Modules, name: str) -> set[str]:
    out: set[str] = set()
    todo = [name]
    while todo:
        n = todo.pop()
        for d in mods.dependents(n):
            if d not in out:
                out.add(d)
                todo.append(d)
    return out


def visit_order(states: list[State], start: frozenset[str]) -> list[State]:
    """Greedy: next state = the one reachable with the fewest unloads (then loads)."""
    out: list[State] = []
    cur = start
    rest = list(states)
    while rest:
        best = min(rest, key=lambda s: (len(cur - s.target), len(s.target - cur)))
        out.append(best)
        rest.remove(best)
        cur = best.target
    return out


def run_off(plans: list[Plan], mods: Modules, r: Report) -> None:
    groups: dict[tuple[str, ...], list[Plan]] = {}
    for p in plans:
        groups.setdefault(tuple(p.order), []).append(p)
    states = [State("complete", frozenset(k), list(k), ps) for k, ps in groups.items()]
    direct_mods = sorted({m for p in plans for m in p.direct})
    for m in direct_mods:
        users = [p for p in plans if m in p.direct]
        gone = {m} | closure_of_dependents(mods, m)
        union = {x for p in users for x in p.order}
        states.append(
            State("without", frozenset(union - gone), None, users, m, sorted(gone & union - {m}))
        )
    r.note(f"{len(plans)} files, {len(groups)} distinct sets, {len(direct_mods)} direct modules")
    for st in visit_order(states, frozenset()):
        errors = mods.become(st.target, st.order)
        loaded = mods.loaded() - mods.baseline
        for p in st.files:
            if st.kind == "complete":
                cid = f"complete/{p.id}"
                if errors or loaded != set(st.target) - mods.builtin:
                    r.check(
                        cid,
                        False,
                        "could not load exactly the derived set",
                        "\n".join(errors)
                        + f"\nextra: {sorted(loaded - st.target)}"
                        + f"\nmissing: {sorted(st.target - loaded - mods.builtin)}",
                    )
                    continue
                res = p.apply()
                r.check(
                    cid,
                    res.returncode == 0,
                    f"apply with exactly {len(st.target)} derived modules exited {res.returncode}",
                    f"loaded: {' '.join(st.order or [])}\n{tail(res.stdout + res.stderr)}",
                )
                if p.warnings and res.returncode == 0:
                    # the recommended modules are left out: iptables must say what meshready says
                    said = res.stdout + res.stderr
                    r.check(
                        f"warns/{p.id}",
                        all(w in said for w in p.warnings),
                        "iptables did not print the warning meshready names for the recommended "
                        "modules",
                        "expected: " + " | ".join(p.warnings) + f"\ngot:\n{tail(said)}",
                    )
            else:
                cid = f"minimal/{p.id}/without-{st.left_out}"
                if errors or st.left_out in loaded:
                    r.check(cid, False, "could not set up the state", "\n".join(errors))
                    continue
                res = p.apply()
                also = f" (and {', '.join(st.extra_left_out)})" if st.extra_left_out else ""
                r.check(
                    cid,
                    res.returncode != 0,
                    f"applied without {st.left_out}{also}: meshready says the rules need it directly",
                    f"loaded: {' '.join(sorted(loaded))}",
                )


def run_on(plans: list[Plan], mods: Modules, r: Report) -> None:
    groups: dict[tuple[str, ...], list[Plan]] = {}
    for p in plans:
        groups.setdefault((*p.order, "|", *p.everything), []).append(p)
    r.note(f"{len(plans)} files, {len(groups)} distinct sets")
    for ps in groups.values():
        order = ps[0].order
        errors = mods.unload_all()
        first = ps[0]
        pre: set[str] = set()
        if first.backend == "legacy":
            table = "ip6_tables" if first.file.name.endswith(".v6.rules") else "ip_tables"
            pre = {table, *mods.deps.get(table, [])}
            errors += mods.insmod(mods.order(pre))
        for p in ps:
            res = p.apply()
            got = mods.loaded() - mods.baseline
            want = set(p.everything or order) - mods.builtin
            required = set(order) - mods.builtin
            # nft: every required module, nothing outside required + recommended
            same = required <= got <= want if p.everything else got == want
            ok = not errors and res.returncode == 0 and same
            r.check(
                f"autoload/{p.id}",
                ok,
                f"apply exited {res.returncode}; the kernel's autoloaded set differs from the "
                "derived one"
                if res.returncode == 0
                else f"apply exited {res.returncode} with autoload on",
                "\n".join(errors)
                + f"\nautoloaded, not derived: {sorted(got - want)}"
                + f"\nderived, not loaded: {sorted(want - got)}"
                + f"\n{tail(res.stdout + res.stderr)}",
            )


def _version_key(v: str) -> list[int]:
    return [int(x) for x in v.split(".")]


def profile_files() -> list[Path]:
    """Every profile's iptables rule files, as installed with meshready in the guest."""
    base = Path(str(resources.files("meshready.knowledge").joinpath("data", "profiles")))
    return sorted(base.glob("*.rules"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--backend", action="append", choices=["legacy", "nft", "nftables"], required=True
    )
    ap.add_argument(
        "--iptables", action="append", help="iptables version(s) for nft (default: all)"
    )
    ap.add_argument("--sample", action="store_true", help="one file per distinct derived set")
    ap.add_argument("--modes", help="autoload modes to run in turn: off,on (default: as booted)")
    ap.add_argument("only", nargs="*", help="file ids (dns-uid-gid.v4, tproxy.nft)")
    args = ap.parse_args()
    r = Report()
    mods = Modules()
    modes = args.modes.split(",") if args.modes else ["on" if autoload_on() else "off"]
    plans: list[Plan] = []
    for backend in args.backend:
        files = rule_files(backend)
        if backend == "nft":
            files += profile_files()
        if args.only:
            files = [f for f in files if rule_id(f) in args.only]
        r.check(f"setup/files-{backend}", bool(files), "no rule files found")
        added = ensure_owner_names(files)
        if added:
            r.note("added owner names the rules use: " + ", ".join(added))
        versions: list[str | None] = [None]
        if backend == "nft":
            have = iptables_userlands()
            versions = list(args.iptables or sorted(have, key=_version_key))
            missing = [v for v in versions if v not in have]
            r.check(
                "setup/iptables-versions",
                not missing,
                f"iptables {', '.join(str(v) for v in missing)} not in the guest",
                f"have: {have}",
            )
            versions = [v for v in versions if v in have]
        for version in versions:
            t0 = time.monotonic()
            found = derive(files, backend, r, version)
            what = backend + (f" {version}" if version else "")
            r.note(f"{what}: derived {len(found)} of {len(files)} in {time.monotonic() - t0:.1f}s")
            if args.sample:
                seen: set[tuple[str, ...]] = set()
                sample = []
                for p in found:
                    key = (*p.order, "|", *p.everything)
                    if p.profile or key not in seen:  # every profile is kept
                        seen.add(key)
                        sample.append(p)
                found = sample
                r.note(f"{what} sample: " + " ".join(p.id for p in found))
            plans += found
    for mode in modes:
        set_autoload(mode == "on")
        errors = mods.unload_all()
        r.check(
            f"setup/unload-before-autoload-{mode}", not errors, "rmmod failed", "\n".join(errors)
        )
        t0 = time.monotonic()
        if mode == "on":
            run_on(plans, mods, r)
        else:
            run_off(plans, mods, r)
        r.note(f"autoload {mode}: {time.monotonic() - t0:.1f}s")
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
