"""Build the native runtime (``native/``: libedgedistill + ``edgedistill-native``) against the installed
executorch wheel's C++ SDK, once per source version.

The build folder is cached under ``<cache>/native/<key>`` where the key hashes every source file of
``native/`` and the executorch version, so tests, benchmarks and CI compile once and any edit rebuilds.
Needs cmake (>= 3.19) and a C++17 compiler; OpenSSL's headers (Debian ``libssl-dev``) for sha256.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .cache import cache_dir
from .errors import EdgedistillError

SOURCE = Path(__file__).resolve().parent.parent / "native"
PROGRAMS = ("edgedistill-native", "edgedistill-tokenize")


class NativeBuildError(EdgedistillError):
    """The native runtime cannot be built here (a tool missing, a compile error)."""


def executorch_prefix() -> Path:
    """The installed executorch package folder (holds lib/cmake/executorch); found without importing it."""
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise NativeBuildError("the native runtime builds against the executorch wheel's C++ SDK, which is not "
                               "installed: pip install 'edgedistill[executorch]'")
    prefix = Path(list(spec.submodule_search_locations)[0])
    if not (prefix / "lib" / "cmake" / "executorch" / "executorch-config.cmake").is_file():
        raise NativeBuildError(f"{prefix}: this executorch install ships no CMake package (lib/cmake/executorch); "
                               "install executorch==1.5.1 from PyPI")
    return prefix


def missing_tools() -> list[str]:
    """Build tools absent from PATH (empty when a build can be tried)."""
    missing = [] if shutil.which("cmake") else ["cmake"]
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler (g++ or clang++)")
    return missing


def source_key() -> str:
    """sha256 (shortened) of every file under native/ and the executorch version."""
    if not (SOURCE / "CMakeLists.txt").is_file():
        raise NativeBuildError(f"{SOURCE}: the native sources are not in this install; build from a source "
                               "checkout of edgedistill")
    h = hashlib.sha256()
    for p in sorted(SOURCE.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(SOURCE)).encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(importlib.metadata.version("executorch").encode())
    return h.hexdigest()[:20]


def build(force: bool = False, jobs: int | None = None, quiet: bool = True) -> Path:
    """The folder holding ``edgedistill-native``, ``edgedistill-tokenize`` and ``libedgedistill.so``,
    built now unless a build of these exact sources is cached."""
    missing = missing_tools()
    if missing:
        raise NativeBuildError(f"building the native runtime needs {' and '.join(missing)} on PATH "
                               "(Debian: apt-get install cmake g++ libssl-dev)")
    prefix = executorch_prefix()
    root = cache_dir("native")
    out = root / source_key()
    if not force and all((out / p).is_file() for p in PROGRAMS):
        return out
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions or CI jobs building at once share one build
        if not force and all((out / p).is_file() for p in PROGRAMS):
            return out
        tmp = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        try:
            steps = [["cmake", "-S", str(SOURCE), "-B", str(tmp), f"-DCMAKE_PREFIX_PATH={prefix}",
                      "-DCMAKE_BUILD_TYPE=Release"],
                     ["cmake", "--build", str(tmp), "-j", str(jobs or min(4, os.cpu_count() or 1))]]
            for cmd in steps:
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "error" in ln.lower()]
                    raise NativeBuildError(f"native build failed at '{' '.join(cmd[:2])}': "
                                           f"{(tail or (proc.stderr or proc.stdout).splitlines() or ['?'])[0][:300]}")
                if not quiet:
                    print(proc.stdout, end="")
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)  # the rpath points at the executorch wheel, not at this folder: safe to move
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return out


def program(name: str = "edgedistill-native") -> Path:
    """The path of a built native program (builds first when needed)."""
    return build() / name
