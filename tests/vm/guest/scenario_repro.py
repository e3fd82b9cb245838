#!/usr/bin/env python3
"""Scenario 1, run inside the guest: the founding failure and meshready's diagnosis of it.

With ip_tables not loaded, Istio's sidecar rules applied with iptables-legacy-restore in a pod fail
with `unable to initialize table 'nat'`; `meshready check` on the node says not ready and names the
missing modules; loading what `meshready needs` derives fixes it and check then says ready.

Usage: scenario_repro.py [--modes off,on]   autoload modes in turn (kernel.modprobe pointing
nowhere, or working), with everything unloaded in between; default: the mode the guest booted with.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

sys.path.insert(0, "/meshready-vm/guest")
from mrguest import (
    RULES,
    Modules,
    Report,
    apply_in_pod,
    autoload_on,
    meshready,
    meshready_inprocess,
    needs,
    set_autoload,
    tail,
)

RULE = RULES / "sidecar-iptables" / "dns-uid-gid.v4.rules"
# What the kernel needs for that file and the node in the seed lacked (kernel-and-mesh-facts.md).
MUST_NAME = ["ip_tables", "iptable_nat", "iptable_raw", "xt_REDIRECT", "xt_owner", "xt_CT"]


def check_json(r: Report, check_id: str, want_code: int) -> dict[str, object] | None:
    proc = meshready(["check", "--rules", str(RULE), "--backend", "legacy", "-o", "json"])
    detail = (
        f"exit {proc.returncode}\nstdout:\n{tail(proc.stdout, 40)}\nstderr:\n{tail(proc.stderr)}"
    )
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        r.check(check_id, False, "meshready check -o json printed no JSON", detail)
        return None
    want_ready = want_code == 0
    ok = proc.returncode == want_code and data.get("ready") is want_ready
    r.check(check_id, ok, f"expected exit {want_code} and ready={want_ready}", detail)
    return data if isinstance(data, dict) else None


def scenario(r: Report, mods: Modules, auto: bool) -> None:
    p = f"repro/autoload-{'on' if auto else 'off'}"
    r.note(f"autoload {'on' if auto else 'off'}; rules {RULE.name}")

    r.check(f"{p}/precondition", "ip_tables" not in mods.loaded(), "ip_tables is already loaded")
    plan: dict[str, Any] | None = None
    try:
        plan = needs([RULE], "legacy")
        order = plan.get("load_order")
        missing = [m for m in MUST_NAME if not isinstance(order, list) or m not in order]
        r.check(f"{p}/needs", not missing, f"load_order lacks {missing}", json.dumps(order))
        code, out, err = meshready_inprocess(["needs", "--rules", str(RULE), "--backend", "legacy"])
        r.check(
            f"{p}/needs-lines-match-json",
            code == 0 and out.split() == order,
            f"-o lines (exit {code}) differs from the JSON load_order",
            f"lines: {out.split()}\njson:  {order}\n{err}",
        )
    except (RuntimeError, ValueError) as exc:
        r.check(f"{p}/needs", False, str(exc))
    res = apply_in_pod(RULE)
    out = res.stdout + res.stderr
    r.check(
        f"{p}/pod-apply-fails",
        res.returncode != 0 and "unable to initialize table 'nat'" in out,
        f"iptables-legacy-restore exited {res.returncode} without the founding error",
        out,
    )

    data = check_json(r, f"{p}/check-not-ready", 1)
    if data is not None:
        modules = data.get("modules")
        states = {}
        if isinstance(modules, list):
            states = {m.get("name"): m.get("state") for m in modules if isinstance(m, dict)}
        wrong = {m: states.get(m) for m in MUST_NAME if states.get(m) != "loadable"}
        r.check(
            f"{p}/check-names-missing",
            not wrong,
            f"modules not reported as loadable: {wrong}",
            json.dumps(states, indent=1),
        )
    human = meshready(["check", "--rules", str(RULE), "--backend", "legacy"])
    unnamed = [m for m in MUST_NAME if m not in human.stdout + human.stderr]
    r.check(
        f"{p}/check-human-output",
        human.returncode == 1 and not unnamed,
        f"exit {human.returncode} (want 1); modules not named: {unnamed}",
        human.stdout + human.stderr,
    )

    # ip_tables alone (what the iptables binary would have loaded outside a pod)
    errs = mods.insmod(mods.order({"ip_tables", *mods.deps["ip_tables"]}))
    res = apply_in_pod(RULE)
    out = res.stdout + res.stderr
    if auto:
        r.check(
            f"{p}/ip_tables-then-kernel-autoloads",
            not errs and res.returncode == 0,
            f"with ip_tables loaded and autoload on, apply exited {res.returncode} {errs}",
            out,
        )
    else:
        r.check(
            f"{p}/ip_tables-alone-not-enough",
            not errs and res.returncode != 0,
            f"with only ip_tables and autoload off, apply exited {res.returncode} {errs}",
            out,
        )

    # the fix: exactly what meshready derived before anything was loaded
    if plan is None:
        return
    order = [str(m) for m in plan.get("load_order", [])]
    try:
        later = needs([RULE], "legacy")
        r.check(
            f"{p}/needs-independent-of-loaded-state",
            later.get("load_order") == plan.get("load_order"),
            "load_order changed once some modules were loaded",
            f"before: {plan.get('load_order')}\nafter:  {later.get('load_order')}\n"
            "reported built-in after loading ip_tables: "
            f"{[m.get('name') for m in later.get('modules', []) if m.get('builtin')]}",
        )
    except (RuntimeError, ValueError) as exc:
        r.check(f"{p}/needs-independent-of-loaded-state", False, str(exc))
    errs = mods.insmod(order)
    r.check(f"{p}/load-needs", not errs, "insmod failed", "\n".join(errs))
    res = apply_in_pod(RULE)
    r.check(
        f"{p}/pod-apply-after-fix",
        res.returncode == 0,
        f"iptables-legacy-restore exited {res.returncode}",
        res.stdout + res.stderr,
    )
    check_json(r, f"{p}/check-ready-after-fix", 0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", help="autoload modes to run in turn: off,on (default: as booted)")
    args = ap.parse_args()
    r = Report()
    mods = Modules()
    modes = args.modes.split(",") if args.modes else ["on" if autoload_on() else "off"]
    for i, mode in enumerate(modes):
        set_autoload(mode == "on")
        if i:  # back to the state of a fresh boot
            errors = mods.unload_all()
            r.check(f"repro/autoload-{mode}/unload", not errors, "rmmod failed", "\n".join(errors))
        scenario(r, mods, mode == "on")
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
