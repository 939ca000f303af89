"""Torch-free loader for edgedistill bundles (``pip install 'edgedistill[runtime]'``).

    from edgedistill.runtime import Bundle
    b = Bundle.open("runs/quickstart/bundles/phone")      # a folder or a .zip
    vectors = b.embed(["A gorgeous, witty, seductive movie."])
    Bundle.open("runs/reviews/bundles/phone").predict(["Great value."])  # classifier bundles:
    # [{"label": "positive", "score": 0.97, "scores": {"negative": 0.03, "positive": 0.97}}]

    from edgedistill.runtime import CausalLM, Sampling
    lm = CausalLM.open("runs/llm/bundles/int8-weight")      # causal-LM bundles: ONNX ones need no torch
    print(lm.generate("What is a phone?", Sampling(max_new_tokens=40), chat=True))

Only numpy, onnxruntime, tokenizers (and jinja2 for chat templates) are
imported; nothing here may import torch or transformers (a test enforces it),
except that an ExecuTorch ``.pte`` bundle loads executorch, which needs torch.
Models are opened through :mod:`edgedistill.backends`.
"""

from .bundle import Bundle
from .causal_lm import CausalLM
from .format import FORMAT_VERSION, SUPPORTED_FORMATS, BundleFiles, verify_bundle
from .generation import Sampling

__all__ = ["Bundle", "BundleFiles", "CausalLM", "FORMAT_VERSION", "SUPPORTED_FORMATS", "Sampling", "verify_bundle"]
