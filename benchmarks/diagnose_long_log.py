"""Print how long `diagnose_text` takes on a 10,000-line log (a clean Istio run repeated, then
the founding failure), best of five. Target: well under 1 s on the development machine."""

from __future__ import annotations

import time
from pathlib import Path

from meshready.diagnose.engine import diagnose_text

ROOT = Path(__file__).resolve().parent.parent
NOISY = ROOT / "tests" / "data" / "logs" / "clean-istio-1.17-success.log"
FAILING = ROOT.parent / "shared" / "cases" / "oke-ol8-istio-1.17" / "istio-init.log"


def main() -> None:
    noisy = NOISY.read_text(encoding="utf-8")
    text = noisy * (10_000 // noisy.count("\n") + 1) + FAILING.read_text(encoding="utf-8")
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        diagnosis = diagnose_text(text, "big")
        timings.append(time.perf_counter() - start)
    print(
        f"diagnose_text on {text.count(chr(10))} lines: best {min(timings) * 1000:.0f} ms, "
        f"median {sorted(timings)[2] * 1000:.0f} ms; first cause {diagnosis.findings[0].cause}"
    )


if __name__ == "__main__":
    main()
