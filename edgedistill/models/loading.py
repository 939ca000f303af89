"""Load Hugging Face encoder folders safely and quietly.

Only safetensors weights are accepted: a pickle-based ``pytorch_model.bin``
can execute code when loaded, so it is refused with a pointer to conversion.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import ModelError

WEIGHTS = "model.safetensors"


def quiet_transformers() -> None:
    # transformers imports torchao when it is installed (the ExecuTorch extra): its CUDA-kernel load
    # failures and torch's pytree deprecation notes are harmless on CPU and would bury our output.
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def weights_file(folder: Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found")
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder}: not a Hugging Face model folder (no config.json)")
    w = folder / WEIGHTS
    if w.is_file():
        return w
    if (folder / "pytorch_model.bin").is_file():
        raise ModelError(
            f"{folder}: only safetensors weights are loaded (pytorch_model.bin is a pickle that can run code); "
            "convert it once with transformers' save_pretrained(safe_serialization=True)"
        )
    raise ModelError(f"{folder}: no {WEIGHTS} in the model folder")


def load_encoder(folder: Path, attn_implementation: str = "sdpa"):
    """(model, tokenizer) from a local folder, in eval mode, on CPU."""
    quiet_transformers()
    from transformers import AutoModel

    folder = Path(folder)
    weights_file(folder)
    tokenizer = load_tokenizer(folder)
    try:
        try:
            model = AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation=attn_implementation)
        except ValueError as e:
            # Some architectures (MPNet) have no SDPA attention; eager computes the same thing.
            if attn_implementation == "eager" or "attention implementation" not in str(e):
                raise
            model = AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation="eager")
    except Exception as e:
        raise ModelError(f"{folder}: cannot load the model weights ({_short(e)})") from None
    model.eval()
    return model, tokenizer


# Ordinary English: any real vocabulary (WordPiece, BPE, byte-level) covers it without [UNK].
_PROBE = "The quick brown fox jumps over the lazy dog, and the movie was really good."


def load_tokenizer(folder: Path, padding_side: str | None = "right"):
    """The folder's tokenizer, checked to be a real one; right-padding by default (cached token states are
    sliced as [:length]). Every teacher, student, base model and export loads its tokenizer here."""
    quiet_transformers()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:  # tokenizers raise many types; all mean "unreadable"
        raise ModelError(f"{folder}: cannot load the tokenizer ({_short(e)})") from None
    check_tokenizer(tokenizer, folder)
    if padding_side:
        tokenizer.padding_side = padding_side
    return tokenizer


def check_tokenizer(tokenizer, folder: Path) -> None:
    """Refuse a tokenizer without a vocabulary. transformers builds one with only the special tokens from a
    folder that lacks its tokenizer files; every word then becomes [UNK], teacher and student see the same
    empty input, and distillation "succeeds" on nothing. A small but real vocabulary (a domain word list)
    passes: only a tokenizer that knows no ordinary token, or turns every token of plain English into the
    unknown token, is refused."""
    try:
        ids = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    except Exception as e:
        raise ModelError(f"{folder}: the tokenizer cannot encode plain English text ({_short(e)})") from None
    unk = tokenizer.unk_token_id
    n_unk = sum(i == unk for i in ids) if unk is not None else 0
    ordinary = len(tokenizer) - len(set(tokenizer.all_special_ids))
    if not ids or ordinary < 1 or n_unk == len(ids):
        raise ModelError(f"{folder}: the tokenizer has {ordinary} ordinary tokens and turns {n_unk} of {len(ids)} "
                         f"tokens of plain English into {tokenizer.unk_token or 'unknown'}: its vocabulary files "
                         "(tokenizer.json, vocab.txt, ...) are missing or wrong; copy the model's tokenizer files "
                         "into the folder")


def _short(e: Exception) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(e).__name__)
