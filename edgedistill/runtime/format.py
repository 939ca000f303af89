"""The bundle format on disk: a folder or a flat ``.zip`` holding the model,
the tokenizer and ``manifest.json`` with the sha256 and size of every file.

Reading is strict: an unknown format version, a file missing, unlisted or
modified, or a member name that is not a plain file name is refused before
anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from ..errors import ModelError

FORMAT_VERSION = 2
SUPPORTED_FORMATS = (2,)
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def _sha256_stream(f) -> str:
    h = hashlib.sha256()
    while block := f.read(_CHUNK):
        h.update(block)
    return h.hexdigest()


class BundleFiles:
    """Read access to the files of a folder or zip bundle (names are flat file names)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            self._zip = None
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
        elif self.path.exists():
            raise ModelError(f"{self.path}: not a bundle (expected a bundle folder or a .zip of one)")
        else:
            raise ModelError(f"{self.path}: bundle not found")

    @property
    def is_zip(self) -> bool:
        return self._zip is not None

    def names(self) -> list[str]:
        if self._zip is None:
            return sorted(p.name for p in self.path.iterdir() if p.is_file())
        return sorted(self._zip.namelist())

    def exists(self, name: str) -> bool:
        return name in self.names() if self._zip else (self.path / name).is_file()

    def open(self, name: str):
        return self._zip.open(name) if self._zip else open(self.path / name, "rb")

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def file_path(self, name: str) -> Path | None:
        """A real path for ``name`` (folder bundles only); zip members are read as bytes."""
        return None if self._zip else self.path / name

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def sha256(self, name: str) -> str:
        with self.open(name) as f:
            return _sha256_stream(f)


def read_manifest(files: BundleFiles) -> dict:
    where = f"{files.path}{'!' if files.is_zip else '/'}{MANIFEST}"
    if not files.exists(MANIFEST):
        raise ModelError(f"{files.path}: not a bundle (no {MANIFEST})")
    try:
        manifest = json.loads(files.read(MANIFEST))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{where}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{where}: the manifest is not a JSON object")
    version = manifest.get("format_version")
    if version not in SUPPORTED_FORMATS:
        raise ModelError(f"{where}: bundle format {version!r} is not supported (this edgedistill reads "
                         f"{', '.join(map(str, SUPPORTED_FORMATS))}); re-export the bundle with this version")
    return manifest


def verify_files(files: BundleFiles) -> dict:
    """The manifest, once every file matches its recorded sha256 and nothing else is present."""
    manifest = read_manifest(files)
    where = f"{files.path}"
    listed = manifest.get("files") or {}
    if manifest.get("model_file") not in listed:
        raise ModelError(f"{where}/{MANIFEST}: the model file is not listed in 'files'")
    tok = (manifest.get("tokenizer") or {}).get("file")
    if not tok or tok not in listed:
        raise ModelError(f"{where}: the bundle has no tokenizer (manifest 'tokenizer.file' not among its files); "
                         "re-export it with a student folder that has tokenizer.json")
    present = set(files.names())
    for name, info in listed.items():
        if Path(name).name != name or name in ("", ".", "..") or name not in present:
            raise ModelError(f"{where}: file {name!r} listed in the manifest is missing")
        if files.sha256(name) != info.get("sha256"):
            raise ModelError(f"{where}/{name}: sha256 does not match the manifest (modified or corrupt)")
    extra = sorted(present - set(listed) - {MANIFEST})
    if extra:
        raise ModelError(f"{where}: file {extra[0]!r} is not listed in the manifest")
    return manifest


def verify_bundle(path: str | Path) -> dict:
    """Verify a bundle folder or zip; returns its manifest."""
    files = BundleFiles(path)
    try:
        return verify_files(files)
    finally:
        files.close()
