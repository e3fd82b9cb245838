#!/usr/bin/env python3
"""Scenario 3, run inside the guest: the founding node's module state, checked live and offline.

Loads the modules the seed's node had loaded (cases/oke-ol8-istio-1.17/lsmod.txt; those that exist
on this kernel) with modprobe, then for several rule sets shows that `meshready check` on the live
guest (with module autoload on and off) agrees with `meshready check --lsmod` of the same state
offline, and with the seed's own lsmod.txt on the modules that matter. Finally loads what `needs`
derives and checks that both views turn ready and the rules apply in a pod.

Usage: scenario_lsmod.py [--quick]    (--quick: only the first rule set)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, "/meshready-vm/guest")
from mrguest import (
    CASES,
    MODDIR,
    RELEASE,
    RULES,
    Modules,
    Report,
    apply_in_pod,
    autoload_on,
    ensure_owner_names,
    meshready,
    needs,
    set_autoload,
    sh,
    tail,
)

SEED = CASES / "oke-ol8-istio-1.17" / "lsmod.txt"
GUEST_LSMOD = Path("/tmp/lsmod.guest")
RULESETS: list[tuple[str, str, list[Path]]] = [
    (
        "sidecar-legacy",
        "legacy",
        [
            RULES / "sidecar-iptables/dns-uid-gid.v4.rules",
            RULES / "sidecar-iptables/dns-uid-gid.v6.rules",
        ],
    ),
    (
        "tproxy-legacy",
        "legacy",
        [RULES / "sidecar-iptables/tproxy.v4.rules", RULES / "sidecar-iptables/tproxy.v6.rules"],
    ),
    ("sidecar-nftables", "nftables", [RULES / "sidecar-nft/dns-uid-gid.nft"]),
]
# Not loaded on the seed's node and needed by its sidecar's IPv4 rules (cases/.../README.md).
SEED_MISSING = ["ip_tables", "iptable_nat", "xt_REDIRECT", "xt_owner"]


def rules_args(files: list[Path], backend: str) -> list[str]:
    args = ["--backend", backend, "-o", "json"]
    for f in files:
        args += ["--rules", str(f)]
    return args


def run_check(args: list[str]) -> tuple[int, dict[str, Any] | None, str]:
    proc = meshready(["check", *args])
    text = f"$ meshready check {' '.join(args)}\nexit {proc.returncode}\n{tail(proc.stdout, 30)}\n"
    text += tail(proc.stderr)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return proc.returncode, None, text
    return proc.returncode, data if isinstance(data, dict) else None, text


def states(data: dict[str, Any] | None) -> dict[str, str]:
    if data is None or not isinstance(data.get("modules"), list):
        return {}
    return {str(m.get("name")): str(m.get("state")) for m in data["modules"] if isinstance(m, dict)}


def main() -> int:
    quick = "--quick" in sys.argv[1:]  # only the first rule set (for the sampled kernels)
    r = Report()
    mods = Modules()
    boot_autoload = autoload_on()
    ensure_owner_names([f for _, _, fs in RULESETS for f in fs])
    names = [ln.split()[0] for ln in SEED.read_text().splitlines()[1:] if ln.strip()]
    present = [n for n in names if mods.exists(n)]
    absent = [n for n in names if not mods.exists(n)]
    r.note(f"seed lsmod: {len(names)} modules, {len(present)} in the guest's module tree")
    r.note(f"not in the guest (not on this kernel, or outside its netfilter part): {absent}")
    proc = sh(["modprobe", "-a", *present])
    now = mods.loaded()
    notloaded = [n for n in present if n not in now and n not in mods.builtin]
    r.check(
        "lsmod/load-seed-modules",
        proc.returncode == 0 and not notloaded,
        f"modprobe exited {proc.returncode}; not loaded: {notloaded}",
        proc.stderr,
    )
    GUEST_LSMOD.write_text(sh(["lsmod"]).stdout)
    offline_base = ["--lsmod", str(GUEST_LSMOD), "--kernel-release", RELEASE]
    offline_base += ["--modules-dir", str(MODDIR)]

    for rid, backend, files in RULESETS[:1] if quick else RULESETS:
        code_off, offline, text_off = run_check([*offline_base, *rules_args(files, backend)])
        r.check(
            f"lsmod/{rid}/offline",
            offline is not None and code_off in (0, 1),
            "offline check gave no JSON report",
            text_off,
        )
        for auto in (True, False):
            set_autoload(auto)
            code, live, text = run_check(rules_args(files, backend))
            mode = "on" if auto else "off"
            same = (
                live is not None
                and offline is not None
                and code == code_off
                and live.get("ready") == offline.get("ready")
                and states(live) == states(offline)
            )
            diff = {
                n: (states(live).get(n), states(offline).get(n))
                for n in sorted(set(states(live)) | set(states(offline)))
                if states(live).get(n) != states(offline).get(n)
            }
            r.check(
                f"lsmod/{rid}/live-equals-offline-autoload-{mode}",
                same,
                f"live exit {code} ready={live and live.get('ready')} vs offline exit {code_off} "
                f"ready={offline and offline.get('ready')}; differing states (live, offline): {diff}",
                text + "\n" + text_off,
            )
        set_autoload(boot_autoload)
        if backend == "legacy":
            s = states(offline)
            wrong = {m: s.get(m) for m in SEED_MISSING if s.get(m) != "loadable"}
            r.check(
                f"lsmod/{rid}/names-seed-missing",
                offline is not None and offline.get("ready") is False and not wrong,
                f"expected not ready with {SEED_MISSING} loadable; got {wrong}",
                text_off,
            )

    # the seed's own lsmod.txt, offline against this kernel's module tree
    rid, backend, files = RULESETS[0]
    seed_args = ["--lsmod", str(SEED), "--kernel-release", RELEASE, "--modules-dir", str(MODDIR)]
    code_seed, seed, text_seed = run_check([*seed_args, *rules_args(files, backend)])
    s = states(seed)
    wrong = {m: s.get(m) for m in SEED_MISSING if s.get(m) in ("loaded", "builtin", None)}
    r.check(
        "lsmod/seed-file-offline",
        code_seed == 1 and seed is not None and seed.get("ready") is False and not wrong,
        f"exit {code_seed} (want 1); modules wrongly reported present: {wrong}",
        text_seed,
    )

    # the fix, then both views say ready
    try:
        plan = needs(files, backend)
    except (RuntimeError, ValueError) as exc:
        r.check("lsmod/fix", False, str(exc))
        return r.finish()
    errs = mods.insmod([str(m) for m in plan.get("load_order", [])])
    pods = [apply_in_pod(f) for f in files]
    bad = [
        f"{f.name}: {p.returncode} {tail(p.stderr, 3)}"
        for f, p in zip(files, pods, strict=True)
        if p.returncode
    ]
    r.check(
        "lsmod/fix-applies",
        not errs and not bad,
        "after loading the derived set",
        "\n".join(errs + bad),
    )
    GUEST_LSMOD.write_text(sh(["lsmod"]).stdout)
    code_live, live, text = run_check(rules_args(files, backend))
    code_off, offline, text_off = run_check([*offline_base, *rules_args(files, backend)])
    r.check(
        "lsmod/fix-ready-live-and-offline",
        code_live == 0
        and code_off == 0
        and live is not None
        and offline is not None
        and live.get("ready") is True
        and offline.get("ready") is True,
        f"live exit {code_live}, offline exit {code_off} (want 0 and ready)",
        text + "\n" + text_off,
    )
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
