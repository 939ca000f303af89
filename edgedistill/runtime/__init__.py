"""Torch-free loader for edgedistill bundles (``pip install 'edgedistill[runtime]'``).

    from edgedistill.runtime import Bundle
    b = Bundle.open("runs/quickstart/bundles/phone")      # a folder or a .zip
    vectors = b.embed(["A gorgeous, witty, seductive movie."])

Only numpy, onnxruntime and tokenizers are imported; nothing here (or under
it) may import torch or transformers (a test enforces it).
"""

from .bundle import Bundle
from .format import FORMAT_VERSION, SUPPORTED_FORMATS, BundleFiles, verify_bundle

__all__ = ["Bundle", "BundleFiles", "FORMAT_VERSION", "SUPPORTED_FORMATS", "verify_bundle"]
