"""The layers stay visible: a package imports only the layers below it (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "meshready"
ORDER = ["knowledge", "rules", "host", "assess", "actions", "diagnose", "cluster", "agent", "cli"]
SHARED = {"errors", "paths", "boundedio", "safetext", "__init__"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("meshready"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("meshready"))
    return found


def test_each_layer_imports_only_layers_below() -> None:
    bad: list[str] = []
    for layer_index, layer in enumerate(ORDER):
        for path in sorted((SRC / layer).rglob("*.py")):
            for module in _imports(path):
                parts = module.split(".")
                target = parts[1] if len(parts) > 1 else "__init__"
                if target in SHARED or target == layer:
                    continue
                if target not in ORDER or ORDER.index(target) > layer_index:
                    bad.append(f"{path.relative_to(SRC)} imports {module}")
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_shared_modules_import_nothing_of_ours() -> None:
    for name in ("errors.py", "paths.py"):
        assert not _imports(SRC / name), name
    for name in ("boundedio.py", "safetext.py"):  # the error types only
        assert _imports(SRC / name) <= {"meshready.errors"}, name
