"""Run meshready's CLI as a process for tests, optionally with a fake module loader.

    python tests/agent/launch.py agent --node-name N --host-root DIR ...

`MESHREADY_TEST_LOADER=fake[:fail=a,b][:delay=S]` replaces the loader the agent would choose
(`meshready.actions.loader.choose_loader`) with `tests.agent.fakes.FakeLoader`, because this
machine's kernel cannot load modules. Everything else is the real code path: `main()` (errors and
exit codes), the click command, the agent loop, lightkube, the API server. Without the variable it
is exactly the `meshready` console script.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if os.environ.get("MESHREADY_TEST_LOADER"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import meshready.agent.work as work
    from tests.agent.fakes import loader_from_env

    fake = loader_from_env()

    def _choose(name: str, root: object) -> object:
        return fake

    work.choose_loader = _choose  # type: ignore[assignment]

from meshready.cli.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
