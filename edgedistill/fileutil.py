"""Hashing and crash-safe writes.

Every output is written under a temporary name next to its destination,
fsynced and renamed into place, so an interrupted or failed stage never leaves
a half-written file where a good one used to be; the temporary is removed on
any failure (a full disk, an I/O error, Ctrl-C). A full disk becomes one
:class:`DiskFullError` line naming the folder and the space it needed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DiskFullError

_CHUNK = 1 << 20
_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(folder: str | os.PathLike, needed: int | None = None) -> DiskFullError:
    folder = Path(folder)
    try:
        free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    except OSError:
        free = None
    need = f"; needed at least {_human(needed)} more" if needed else ""
    have = f", {_human(free)} free" if free is not None else ""
    return DiskFullError(f"{folder}: no space left on the device while writing{need}{have}; "
                         "free some space and run the same command again (earlier outputs are intact)")


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} KB"


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk too.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _size(path: Path) -> int:
    if path.is_dir():
        return dir_size(path)
    return path.stat().st_size if path.exists() else 0


@contextlib.contextmanager
def _removed_on_failure(tmp: Path, folder: Path) -> Iterator[None]:
    """Remove the temporary file or folder ``tmp`` if the body fails in any way; a full disk becomes one
    DiskFullError naming ``folder`` and how much had been written."""
    try:
        yield
    except BaseException as e:
        written = _size(tmp)
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in _FULL:
            raise disk_full_error(folder, written or None) from None
        raise


@contextlib.contextmanager
def atomic_output(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``dest`` for the caller (or a library) to write a file to; on success
    it is fsynced and renamed to ``dest``, on any failure removed, ``dest`` untouched."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    with _removed_on_failure(tmp, dest.parent):
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{tmp}: nothing was written")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of key order."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


@contextlib.contextmanager
def scratch_file(folder: str | os.PathLike, name: str) -> Iterator[Path]:
    """A temporary file in ``folder`` for an intermediate result, removed afterwards whatever happens."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
    except OSError as e:
        if e.errno in _FULL:
            raise disk_full_error(folder) from None
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_results(out: str | os.PathLike, result: Any, markdown: str) -> Path:
    """A benchmark's pair of outputs: ``OUT.json`` (the result) and ``OUT.md`` (its table), each atomic;
    returns the JSON path."""
    out = Path(out)
    write_text_atomic(out.with_suffix(".md"), markdown)
    return write_json_atomic(out.with_suffix(".json"), result)


def write_npy_atomic(path: str | os.PathLike, arr: Any) -> Path:
    """``np.save`` through :func:`atomic_output` (numpy imported here: this module serves numpy-free callers)."""
    import numpy as np

    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces ``dest`` only on success.

    On an exception the temporary folder is removed and ``dest`` (if it
    existed) is left exactly as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    with _removed_on_failure(tmp, dest.parent):
        yield tmp
        for p in tmp.rglob("*"):
            if p.is_file():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def dir_size(path: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
