"""Wall time of `meshready check` on a full real module index, interpreter start included.

Prints figures; target well under 0.3 s. Uses the full Debian 6.1 index from the cache when
scripts/build-test-artifacts has fetched it (about 6,000 modules), else the committed extract.

    .venv/bin/python benchmarks/check_wall_time.py [RUNS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from meshready.paths import cache_dir  # noqa: E402


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    release = "6.1.0-56-cloud-amd64"
    full = cache_dir() / "kernels" / release / "lib" / "modules" / release
    modules_dir = (
        full if (full / "modules.dep").is_file() else REPO / "tests/data/kernels" / release
    )
    lsmod = REPO.parent / "shared" / "cases" / "oke-ol8-istio-1.17" / "lsmod.txt"
    exe = str(Path(sys.executable).parent / "meshready")
    cmds = {
        "check (live, this machine)": [exe, "check", "-o", "json"],
        "check (offline, full index)": [
            exe,
            "check",
            "--lsmod",
            str(lsmod),
            "--kernel-release",
            release,
            "--modules-dir",
            str(modules_dir),
            "-o",
            "json",
        ],
        "check (offline, table output)": [
            exe,
            "check",
            "--lsmod",
            str(lsmod),
            "--kernel-release",
            release,
            "--modules-dir",
            str(modules_dir),
        ],
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
    }
    lines = sum(1 for _ in (modules_dir / "modules.alias").open())
    print(f"index: {modules_dir} ({lines} alias lines)")
    for label, cmd in cmds.items():
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times.append(time.perf_counter() - start)
        print(
            f"{label:32} median {statistics.median(times) * 1000:6.1f} ms  "
            f"max {max(times) * 1000:6.1f} ms  ({runs} runs)"
        )


if __name__ == "__main__":
    main()
