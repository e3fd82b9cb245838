"""JSON Schemas (draft 2020-12) of every ``-o json`` output, shipped with the package.

Each output carries ``"schema": "meshready.io/NAME/vN"``; ``NAME.json`` here describes it. Keys are
snake_case everywhere. A change that breaks a consumer gets a new version (``v2``), never an edit
of what ``v1`` promises.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def names() -> list[str]:
    return sorted(
        p.name.removesuffix(".json")
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".json")
    )


def load(name: str) -> dict[str, Any]:
    """The schema NAME (``report``, ``status``, ...) or for a ``meshready.io/NAME/vN`` id."""
    if name.startswith("meshready.io/"):
        name = name.split("/")[1]
    data: dict[str, Any] = json.loads(
        resources.files(__name__).joinpath(f"{name}.json").read_text()
    )
    return data
