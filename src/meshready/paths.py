"""Where meshready keeps things outside any repository."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache for heavy artifacts: $MESHREADY_CACHE, else $XDG_CACHE_HOME/meshready, else ~/.cache."""
    explicit = os.environ.get("MESHREADY_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "meshready"
