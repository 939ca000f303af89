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


def load_tokenizer(folder: Path):
    """The folder's tokenizer, right-padding (cached token states are sliced as [:length])."""
    quiet_transformers()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:  # tokenizers raise many types; all mean "unreadable"
        raise ModelError(f"{folder}: cannot load the tokenizer ({_short(e)})") from None
    tokenizer.padding_side = "right"
    return tokenizer


def _short(e: Exception) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(e).__name__)
