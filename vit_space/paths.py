"""Where autoprox keeps its user cache."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$AUTOPROX_CACHE``, else ``$XDG_CACHE_HOME/autoprox``, else ``~/.cache/autoprox``."""
    if os.environ.get("AUTOPROX_CACHE"):
        return Path(os.environ["AUTOPROX_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "autoprox"
