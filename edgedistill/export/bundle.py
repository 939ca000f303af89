"""Writing app bundles: the model, its tokenizer and a manifest with the sha256
of every file, as a folder and optionally a ``.zip``, both written atomically.
Reading and verification live in :mod:`edgedistill.runtime.format` (torch-free)."""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from pathlib import Path

from ..errors import ModelError
from ..fileutil import atomic_dir, atomic_output, sha256_file, write_bytes_atomic
from ..runtime.format import FORMAT_VERSION, MANIFEST, manifest_bytes, verify_bundle  # noqa: F401  (re-exported)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "sentencepiece.bpe.model", "spm.model", "merges.txt", "vocab.json", "chat_template.jinja")
# Settings the runtime needs to reproduce the exporter's padding and truncation.
TOKENIZER_KEYS = ("pad_token", "pad_token_type_id", "padding_side", "truncation_side", "do_lower_case",
                  "tokenizer_class")


def _write_tokenizer_json(tokenizer_dir: Path, dest: Path) -> None:
    """Older or slow-tokenizer folders lack tokenizer.json; the runtime's ``tokenizers`` library needs it."""
    vocab = ("vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spm.model", "tokenizer.model")
    if not any((tokenizer_dir / v).is_file() for v in vocab):
        # transformers would silently build an empty-vocabulary tokenizer from the config alone.
        raise ModelError(f"{tokenizer_dir}: no tokenizer.json and no vocabulary file ({', '.join(vocab)}); "
                         "save the student's tokenizer with save_pretrained into that folder")
    from ..models.loading import quiet_transformers

    quiet_transformers()
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
        backend.save(str(dest))
    except Exception as e:  # any failure means: this folder cannot give the runtime a tokenizer
        why = " ".join(str(e).split())[:160]
        raise ModelError(f"{tokenizer_dir}: no tokenizer.json and none can be derived ({why}); "
                         "save the tokenizer with a fast (tokenizers-backed) tokenizer") from None


def tokenizer_spec(folder: Path) -> dict:
    cfg = {}
    if (folder / "tokenizer_config.json").is_file():
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
    spec = {"file": "tokenizer.json", "library": "tokenizers"}
    spec.update({k: cfg[k] for k in TOKENIZER_KEYS if isinstance(cfg.get(k), (str, int, bool))})
    return spec


def created_with(backend: str) -> dict:
    """The runtime version that wrote the model: apps must load it with the same or newer."""
    from importlib.metadata import version

    name = "executorch" if backend == "executorch" else "onnxruntime"
    return {name: version(name)}


def write_bundle(dest: Path, model_file: Path, tokenizer_dir: Path, manifest: dict,
                 model_name: str = "model.onnx", extra_files: dict[str, bytes] | None = None) -> Path:
    """Create ``dest`` (replacing an older bundle only once everything is written). Every task's bundle
    (embedding, classifier, causal LM) is written here; the manifest gets the provenance fields
    (``created_by``, ``created``, ``created_with``) unless the caller set them.

    ``extra_files``: more files (name -> content) to ship and hash, e.g. an LLM's generation config."""
    from .. import __version__

    manifest = {"created_by": f"edgedistill {__version__}",
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **manifest}
    if "created_with" not in manifest and "backend" in manifest:
        manifest["created_with"] = created_with(manifest["backend"])
    tokenizer_dir = Path(tokenizer_dir)
    if not Path(model_file).is_file():
        raise ModelError(f"{model_file}: model file not found")
    with atomic_dir(dest) as tmp:
        shutil.copyfile(model_file, tmp / model_name)
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                shutil.copyfile(tokenizer_dir / name, tmp / name)
        if not (tmp / "tokenizer.json").is_file():
            _write_tokenizer_json(tokenizer_dir, tmp / "tokenizer.json")
        for name, content in (extra_files or {}).items():
            (tmp / name).write_bytes(content)
        files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                 for p in sorted(tmp.iterdir()) if p.is_file()}
        tok = {**tokenizer_spec(tokenizer_dir),
               "files": sorted(n for n in files if n != model_name and n not in (extra_files or {}))}
        write_bytes_atomic(tmp / MANIFEST, manifest_bytes({"format_version": FORMAT_VERSION, **manifest,
                                                           "model_file": model_name, "tokenizer": tok, "files": files}))
    return dest


def write_zip(folder: Path, dest: Path | None = None) -> Path:
    """A flat ``.zip`` of a bundle folder (``FOLDER.zip`` by default), renamed into place when complete."""
    folder = Path(folder)
    dest = Path(dest) if dest else folder.with_suffix(".zip")
    verify_bundle(folder)
    with atomic_output(dest) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.iterdir()):
            if p.is_file():
                z.write(p, p.name)
    return dest
