"""Where fetched corpora and teacher outputs are cached.

``$EDGEDISTILL_CACHE`` wins, then ``$XDG_CACHE_HOME/edgedistill``, then
``~/.cache/edgedistill``. Everything in it can be deleted at any time; it is
re-created (and re-verified) on the next run.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("EDGEDISTILL_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) / "edgedistill" if xdg else Path.home() / ".cache" / "edgedistill"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
