#!/usr/bin/env python3
"""Scenario 2, run inside the guest: what `meshready needs` derives is complete and minimal.

Usage: scenario_minimal.py --backend legacy|nftables [--backend ...] [--sample] [--modes off,on]
                           [FILE-ID ...]

For every rule file (sidecar-iptables/*.rules with iptables-legacy-restore / ip6tables-legacy-restore,
or sidecar-nft/*.nft with nft -f), meshready derives the module set for this kernel. Then, with the
mode the guest was booted with:

autoload off (kernel.modprobe points nowhere):
  complete/<file>               load exactly the derived set (insmod, in meshready's load order);
                                the loaded set equals it; the file applies in a pod.
  minimal/<file>/without-<mod>  for each module the rules need directly, load the derived sets of
                                every file needing it directly, minus that module (and what cannot
                                load without it): the file must fail to apply in a pod. Failing with
                                more modules loaded implies failing with only the file's own set.
autoload on (kernel.modprobe works, as on most nodes):
  autoload/<file>               from nothing loaded (legacy: only ip_tables / ip6_tables, which the
                                iptables binary loads itself outside a pod), the file applies in a
                                pod and the kernel autoloads exactly the derived set.

Files with the same derived set share one load; states are visited in an order that keeps the
number of rmmod calls (about 1 s each under emulation) low. --sample keeps one file per distinct
derived set. --modes runs the autoload modes in turn in one boot (default: the boot's mode).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, "/meshready-vm/guest")
from mrguest import (
    Modules,
    Report,
    apply_in_pod,
    autoload_on,
    ensure_owner_names,
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
    order: list[str]
    direct: list[str]
    unresolved: list[str]

    @property
    def id(self) -> str:
        return rule_id(self.file)


@dataclass
class State:
    kind: str  # complete | without
    target: frozenset[str]
    order: list[str] | None
    files: list[Plan]
    left_out: str = ""
    extra_left_out: list[str] = field(default_factory=list)


def derive(files: list[Path], backend: str, r: Report) -> list[Plan]:
    plans = []
    for f in files:
        fid = rule_id(f)
        try:
            data = needs([f], backend)
        except (RuntimeError, ValueError) as exc:
            r.check(f"needs/{fid}", False, str(exc))
            continue
        builtin = {m["name"] for m in data.get("modules", []) if m.get("builtin")}
        plan = Plan(
            f,
            backend,
            [str(m) for m in data.get("load_order", [])],
            [str(m) for m in data.get("direct", []) if m not in builtin],
            [str(u) for u in data.get("unresolved", [])],
        )
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
                res = apply_in_pod(p.file)
                r.check(
                    cid,
                    res.returncode == 0,
                    f"apply with exactly {len(st.target)} derived modules exited {res.returncode}",
                    f"loaded: {' '.join(st.order or [])}\n{tail(res.stdout + res.stderr)}",
                )
            else:
                cid = f"minimal/{p.id}/without-{st.left_out}"
                if errors or st.left_out in loaded:
                    r.check(cid, False, "could not set up the state", "\n".join(errors))
                    continue
                res = apply_in_pod(p.file)
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
        groups.setdefault(tuple(p.order), []).append(p)
    r.note(f"{len(plans)} files, {len(groups)} distinct sets")
    for order, ps in groups.items():
        errors = mods.unload_all()
        first = ps[0]
        pre: set[str] = set()
        if first.backend == "legacy":
            table = "ip6_tables" if first.file.name.endswith(".v6.rules") else "ip_tables"
            pre = {table, *mods.deps.get(table, [])}
            errors += mods.insmod(mods.order(pre))
        for p in ps:
            res = apply_in_pod(p.file)
            got = mods.loaded() - mods.baseline
            want = set(order) - mods.builtin
            ok = not errors and res.returncode == 0 and got == want
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", action="append", choices=["legacy", "nftables"], required=True)
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
        if args.only:
            files = [f for f in files if rule_id(f) in args.only]
        r.check(f"setup/files-{backend}", bool(files), "no rule files found")
        added = ensure_owner_names(files)
        if added:
            r.note("added owner names the rules use: " + ", ".join(added))
        t0 = time.monotonic()
        found = derive(files, backend, r)
        r.note(f"{backend}: derived {len(found)} of {len(files)} in {time.monotonic() - t0:.1f}s")
        if args.sample:
            seen: set[tuple[str, ...]] = set()
            sample = []
            for p in found:
                if tuple(p.order) not in seen:
                    seen.add(tuple(p.order))
                    sample.append(p)
            found = sample
            r.note(f"{backend} sample: " + " ".join(p.id for p in found))
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
