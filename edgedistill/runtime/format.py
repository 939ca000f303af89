"""The bundle format on disk: a folder or a flat ``.zip`` holding the model,
the tokenizer and ``manifest.json`` with the sha256 and size of every file.

Reading is strict: an unknown format version, a file missing, unlisted or
modified, a damaged zip member, or a member name that is not a plain file name
is refused before anything is loaded.

Identity: the manifest is stored in one canonical form (:func:`manifest_bytes`)
and the bundle's **id** is the sha256 of those bytes. Since the manifest holds
the sha256 of every other file, the id pins model, tokenizer and settings
together: an app that opens a bundle with ``expect_id`` gets exactly the bundle
it was tested with or an error. An optional Ed25519 signature of the id
(``signature.json``, see :mod:`.signing`) proves who exported it.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from pathlib import Path

from ..errors import ModelError

FORMAT_VERSION = 2
SUPPORTED_FORMATS = (2,)
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"
"""Not listed in the manifest (it signs the manifest's hash); the only other file a bundle may hold."""
_CHUNK = 1 << 20
# What a damaged zip raises while reading a member: bad CRC, truncated deflate stream, short file.
_ZIP_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError)


def manifest_bytes(manifest: dict) -> bytes:
    """The one canonical form a manifest is stored in (sorted keys, 2-space indent, ASCII, final newline), so
    the same content always has the same bytes and so the same bundle id."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n").encode()


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
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (*_ZIP_DAMAGE, OSError) as e:
                raise ModelError(f"{self.path}: damaged bundle zip ({_one_line(e)}); re-export or copy it again") from None
            names = self._zip.namelist()
            if len(set(names)) != len(names):
                dup = sorted(n for n in set(names) if names.count(n) > 1)[0]
                self._zip.close()
                raise ModelError(f"{self.path}: the zip holds {dup!r} twice; a bundle zip has one copy of each file")
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
        try:
            with self.open(name) as f:
                return f.read()
        except _ZIP_DAMAGE as e:
            raise self._damaged(name, e) from None

    def _damaged(self, name: str, e: Exception) -> ModelError:
        return ModelError(f"{self.path}!{name}: damaged zip member ({_one_line(e)}); the bundle zip is corrupt, "
                          "re-export or copy it again")

    def file_path(self, name: str) -> Path | None:
        """A real path for ``name`` (folder bundles only); zip members are read as bytes."""
        return None if self._zip else self.path / name

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def sha256(self, name: str) -> str:
        try:
            with self.open(name) as f:
                return _sha256_stream(f)
        except _ZIP_DAMAGE as e:
            raise self._damaged(name, e) from None

    @property
    def id(self) -> str:
        """The bundle id: sha256 of the stored manifest's bytes."""
        return hashlib.sha256(self.read(MANIFEST)).hexdigest()


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:160] or type(e).__name__


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
    if isinstance(version, bool) or version not in SUPPORTED_FORMATS:
        raise ModelError(f"{where}: bundle format {version!r} is not supported (this edgedistill reads "
                         f"{', '.join(map(str, SUPPORTED_FORMATS))}); re-export the bundle with this version")
    check_manifest_types(manifest, where)
    return manifest


# The shape of every manifest field a reader relies on: key -> (type, required). Values of other keys are
# informational. Checked once here, so no reader meets a list where it expects a name.
_OBJ, _STR, _INT = dict, str, int
MANIFEST_FIELDS: dict[str, tuple[type | tuple, bool]] = {
    "model_file": (_STR, True), "files": (_OBJ, True), "tokenizer": (_OBJ, True), "task": (_STR, False),
    "kind": (_STR, False), "backend": (_STR, False), "target": (_OBJ, False), "quantization": (_OBJ, False),
    "inputs": (list, False), "outputs": (list, False), "max_length": (_INT, False), "labels": ((list, type(None)), False),
    "pooling": ((str, type(None)), False), "normalize": ((bool, type(None)), False), "parity": ((dict, type(None)), False),
    "generation": (_OBJ, False), "scheme": (_STR, False), "created_with": (_OBJ, False),
    "early_exits": ((dict, type(None)), False),
}


def check_manifest_types(manifest: dict, where: str) -> None:
    def bad(key: str, want: str):
        raise ModelError(f"{where}: key {key!r} must be {want}, got {json.dumps(manifest.get(key))[:60]}")

    for key, (tp, required) in MANIFEST_FIELDS.items():
        if key not in manifest:
            if required:
                raise ModelError(f"{where}: key {key!r} is missing")
            continue
        value = manifest[key]
        if not isinstance(value, tp) or (tp is _INT and isinstance(value, bool)):
            bad(key, {dict: "an object", str: "a string", int: "an integer", list: "a list"}.get(tp, "another type"))
    for name, info in manifest["files"].items():
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
            bad("files", "an object of file name -> {sha256, bytes}")
    if not isinstance(manifest["tokenizer"].get("file"), (str, type(None))):
        bad("tokenizer", "an object whose 'file' is a file name")
    for key in ("inputs", "outputs"):
        if any(not isinstance(i, dict) or not isinstance(i.get("name"), str) for i in manifest.get(key) or []):
            bad(key, "a list of {name, dtype, shape} objects")
    threads = (manifest.get("target") or {}).get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        bad("target", "an object whose 'threads' is a positive integer")
    if "max_length" in manifest and not 1 <= manifest["max_length"] <= 1 << 20:
        bad("max_length", "a positive token count")
    if any(not isinstance(x, str) for x in manifest.get("labels") or []):
        bad("labels", "a list of label names")


def verify_files(files: BundleFiles, expect_id: str | None = None, public_key: str | Path | None = None) -> dict:
    """The manifest, once every file matches its recorded sha256 and nothing else is present.

    ``expect_id``: refuse any bundle whose id (see :attr:`BundleFiles.id`) differs, e.g. one whose manifest
    was edited. ``public_key``: require ``signature.json`` with a valid Ed25519 signature of the id by this key.
    """
    manifest = read_manifest(files)
    check_identity(files, expect_id, public_key)
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
    extra = sorted(present - set(listed) - {MANIFEST, SIGNATURE})
    if extra:
        raise ModelError(f"{where}: file {extra[0]!r} is not listed in the manifest")
    return manifest


def check_identity(files: BundleFiles, expect_id: str | None, public_key: str | Path | None) -> None:
    if expect_id is not None:
        want = str(expect_id).strip().lower()
        if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
            raise ModelError(f"expected bundle id {expect_id!r} is not a sha256 (64 hex digits)")
        if files.id != want:
            raise ModelError(f"{files.path}: bundle id {files.id} is not the expected {want} (a different or "
                             "modified bundle)")
    if public_key is not None:
        from .signing import verify_signature

        verify_signature(files, public_key)


def verify_bundle(path: str | Path, expect_id: str | None = None, public_key: str | Path | None = None) -> dict:
    """Verify a bundle folder or zip; returns its manifest with the bundle's ``id`` under ``"bundle_id"``
    (computed, not stored: the manifest cannot hold its own hash)."""
    files = BundleFiles(path)
    try:
        manifest = verify_files(files, expect_id, public_key)
        return {**manifest, "bundle_id": files.id}
    finally:
        files.close()
