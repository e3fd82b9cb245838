"""Regression: the agent's threads share one lightkube client; msgspec must not build decoders
concurrently (segmentation fault seen in the agent and reproduced here without the fix)."""

from __future__ import annotations

import subprocess
import sys

RACE = """
import sys, threading
sys.setswitchinterval(1e-6)
from lightkube.core.decoders import decode_object
from lightkube.resources.core_v1 import Event, Node
from meshready.cluster.node import warm_decoders
warm_decoders()
NODE = b'{"metadata":{"name":"x"},"spec":{"taints":[{"key":"k","effect":"NoSchedule"}]},' \\
       b'"status":{"conditions":[{"type":"Ready","status":"True"}]}}'
EVENT = b'{"metadata":{},"involvedObject":{}}'
def work(kind):
    for _ in range(20):
        decode_object(NODE if kind is Node else EVENT, kind)
threads = [threading.Thread(target=work, args=(Node if i % 2 else Event,)) for i in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
print("ok")
"""


def test_warm_decoders_makes_concurrent_first_decodes_safe() -> None:
    # Without warm_decoders() about two runs in three crashed here (msgspec 0.22, lightkube 1.0.1).
    for _ in range(12):
        done = subprocess.run(
            [sys.executable, "-c", RACE], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
        assert done.stdout.strip() == "ok"
