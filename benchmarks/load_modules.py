#!/usr/bin/env python3
"""Load time of the Istio sidecar module set in a real kernel: kmod's modprobe beside meshready's
loaders, in the same guest (qemu, software emulation: absolute figures are slow, compare ratios).

Usage: benchmarks/load_modules.py [--kernel 6.1-amd64] [--kernel 6.12-amd64] [--rounds 3]

For each kernel it boots one guest (autoload off) and, per method and round, unloads the set and
loads it again, checking that every module is loaded afterwards:
- kmod modprobe -a: one modprobe process for the whole set (what systemd-modules-load costs);
- kmod modprobe per module: one process per module (what a shell loop costs);
- meshready modprobe loader / python loader: ModprobeLoader / PythonLoader.load in one Python process;
- meshready fix --loader python (CLI): the whole command, Python start and assessment included.
Needs the cached kernels and guest (scripts/build-test-artifacts).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts" / "vm"))
import vmlib  # noqa: E402


def payload(kernel: str, dest: Path) -> Path:
    """veth is not needed here; the profiles are shipped in case the installed package lacks them."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "src/meshready/knowledge/data/profiles", dest / "profiles")
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kernel", action="append", help="alias (default: 6.1-amd64 and 6.12-amd64)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    kernels = args.kernel or ["6.1-amd64", "6.12-amd64"]
    rows: list[str] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="meshready-bench.") as tmp:
        for kernel in kernels:
            res = vmlib.run_guest(
                kernel,
                ["python3", "/meshready-vm/guest/fix_scenarios.py", "bench", str(args.rounds)],
                autoload="off",
                timeout=args.timeout,
                payload=payload(kernel, Path(tmp) / kernel),
            )
            bench = [
                ln[len("BENCH ") :] for ln in res.output.splitlines() if ln.startswith("BENCH ")
            ]
            fails = [ln for ln in res.output.splitlines() if ln.startswith("FAIL ")]
            if res.exit_code != 0 or fails or not bench:
                failed = True
                print(f"{kernel}: guest exit {res.exit_code}", file=sys.stderr)
                print("\n".join(res.output.splitlines()[-40:]), file=sys.stderr)
            rows += bench
    print("arch release | method | set | best | mean | rounds")
    for row in rows:
        print(row)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
