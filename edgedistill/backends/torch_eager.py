"""PyTorch eager: a Hugging Face model folder, run as the user would run it before any export.

The reference every exported file is compared against; needs torch and
transformers (imported inside the functions, so the registry stays torch-free).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Runner, require_packages

NAME = "torch"
LABEL = "pytorch"
"""What reports call this runtime (the bench report's ``runtime`` field)."""
SUFFIX = None
"""A folder with config.json, not a file."""
EXTRA = "full"
TORCH_FREE = False
RUNTIME_MODULES = ("torch", "transformers")


def require(where: str = "this model", hint: str = "") -> None:
    require_packages(("torch", "transformers"), f"{where} (PyTorch)", EXTRA, hint=hint)


def open(path: str | Path, threads: int = 1, pooling: str = "mean", normalize: bool = True, **_) -> Runner:
    """An encoder folder: ``last_hidden_state`` and the pooled ``sentence_embedding`` (the ONNX graph's outputs)."""
    require(str(path))
    import torch

    from ..models.classifier import is_classifier_folder, load_classifier
    from ..models.encode import pool
    from ..models.loading import load_encoder

    torch.set_num_threads(threads)
    classifier = is_classifier_folder(Path(path))
    model, tok = load_classifier(Path(path)) if classifier else load_encoder(Path(path))

    def run(feed) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            t = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in dict(feed).items()}
            if classifier:  # what a classifier app runs: encoder and head
                return {"logits": model(**t).logits.float().numpy()}
            hidden = model(**t).last_hidden_state
            return {"last_hidden_state": hidden.float().numpy(),
                    "sentence_embedding": pool(hidden, t["attention_mask"], pooling, normalize).float().numpy()}

    def memory() -> dict:
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        return {"weights_bytes": params + buffers, "weights_source": "torch parameters + buffers",
                "arena_bytes": None, "arena_note": "PyTorch allocates from the process heap; see peak RSS"}

    outputs = ["logits"] if classifier else ["last_hidden_state", "sentence_embedding"]
    return Runner(NAME, run, list(tok.model_input_names), outputs, memory)
