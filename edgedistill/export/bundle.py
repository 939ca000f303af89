"""App bundles: the model, its tokenizer and a manifest with the sha256 of
every file. Bundles are written atomically and verified before use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import ModelError
from ..fileutil import atomic_dir, sha256_file, write_json_atomic

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "sentencepiece.bpe.model", "spm.model", "merges.txt", "vocab.json")


def write_bundle(dest: Path, model_file: Path, tokenizer_dir: Path, manifest: dict,
                 model_name: str = "model.onnx") -> Path:
    """Create ``dest`` (replacing an older bundle only once everything is written)."""
    with atomic_dir(dest) as tmp:
        shutil.copyfile(model_file, tmp / model_name)
        for name in TOKENIZER_FILES:
            if (Path(tokenizer_dir) / name).is_file():
                shutil.copyfile(Path(tokenizer_dir) / name, tmp / name)
        files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                 for p in sorted(tmp.iterdir()) if p.is_file()}
        write_json_atomic(tmp / MANIFEST, {"format_version": FORMAT_VERSION, **manifest, "model_file": model_name,
                                           "files": files})
    return dest


def verify_bundle(path: Path) -> dict:
    """The manifest of a bundle whose every file matches its recorded sha256; ModelError otherwise."""
    path = Path(path)
    mf = path / MANIFEST
    if not mf.is_file():
        raise ModelError(f"{path}: not a bundle (no {MANIFEST})")
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{mf}: unreadable manifest ({e})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{mf}: bundle format {manifest.get('format_version')!r} is not supported "
                         f"(this edgedistill reads {FORMAT_VERSION})")
    files = manifest.get("files") or {}
    if manifest.get("model_file") not in files:
        raise ModelError(f"{mf}: the model file is not listed in 'files'")
    for name, info in files.items():
        f = path / name
        if Path(name).name != name or not f.is_file():
            raise ModelError(f"{path}: file {name!r} listed in the manifest is missing")
        if sha256_file(f) != info.get("sha256"):
            raise ModelError(f"{f}: sha256 does not match the manifest (modified or corrupt)")
    extra = sorted(p.name for p in path.iterdir() if p.is_file() and p.name not in files and p.name != MANIFEST)
    if extra:
        raise ModelError(f"{path}: file {extra[0]!r} is not listed in the manifest")
    return manifest
