"""Progress reporting that suits where the output goes.

On a terminal: tqdm bars on stderr. Elsewhere (CI logs, ``| tee``): a plain
line every 30 seconds per long loop, instead of carriage-return noise.
``EDGEDISTILL_PROGRESS=1`` forces bars, ``=0`` silences both.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm

LOG_EVERY_S = 30.0


class _LogProgress:
    """Iterates like tqdm; prints 'desc: i/n (p%), elapsed' at most every LOG_EVERY_S seconds."""

    def __init__(self, iterable, desc: str = "", unit: str = "it", **_):
        self.iterable = iterable
        self.desc = desc or "working"
        self.unit = unit
        self.postfix = ""
        try:
            self.total = len(iterable)
        except TypeError:
            self.total = None

    def set_postfix(self, **kw):
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def __iter__(self):
        start = last = time.monotonic()
        for i, item in enumerate(self.iterable, start=1):
            yield item
            now = time.monotonic()
            if now - last >= LOG_EVERY_S:
                last = now
                of = f"/{self.total} ({100 * i / self.total:.0f}%)" if self.total else ""
                extra = f", {self.postfix}" if self.postfix else ""
                print(f"  {self.desc}: {i}{of} {self.unit}, {now - start:.0f} s{extra}", file=sys.stderr, flush=True)


def progress(iterable=None, **kw):
    flag = os.environ.get("EDGEDISTILL_PROGRESS")
    if flag == "0":
        return tqdm(iterable, disable=True, **kw)
    if flag != "1" and not sys.stderr.isatty():
        return _LogProgress(iterable, **kw)
    kw.setdefault("leave", False)
    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("mininterval", 0.5)
    return tqdm(iterable, file=sys.stderr, **kw)


def say(msg: str) -> None:
    """A status line for the user (stderr, so stdout keeps only results); above a live bar, not through it."""
    tqdm.write(msg, file=sys.stderr)
    sys.stderr.flush()
