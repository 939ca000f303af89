"""Quantization-aware distillation of a causal LM for the ``et-8da4w`` export, with torchao's own QAT.

The fake quantization is derived by torchao from the *same* PTQ configs that
:func:`edgedistill.llm.export_pte.quantize_8da4w` applies at export (int8 per-token asymmetric
activations x int4 symmetric weights in groups of 32 on every Linear including the lm_head;
int8 per-row symmetric embedding), so training sees the scale algorithm and granularity the
``.pte`` uses. :func:`release` swaps the fake-quant modules back to plain ``nn.Linear`` /
``nn.Embedding`` (torchao's convert step without a base config); the export then quantizes the
trained weights with those configs, which is exactly what training emulated.

As at export, the embedding loses its ``padding_idx`` and the tied output matrix is untied before
preparing, so the embedding (int8 rows) and the lm_head (int4 groups) fake-quantize separately.
"""

from __future__ import annotations

import torch

GROUP_SIZE = 32
"""The export's group size (:func:`edgedistill.llm.export_pte.quantize_8da4w`'s default)."""


def configs(group_size: int = GROUP_SIZE):
    """(embedding config, linear config): the PTQ configs of the 8da4w export."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerAxis, PerGroup

    return (IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)),
            Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(group_size)))


def untie(model) -> None:
    """What the export does before quantizing: no padding row, separate embedding and lm_head matrices."""
    emb = model.get_input_embeddings()
    emb.padding_idx = None
    if model.lm_head.weight is emb.weight:
        model.lm_head.weight = torch.nn.Parameter(emb.weight.detach().clone(), requires_grad=emb.weight.requires_grad)
        model.config.tie_word_embeddings = False


def prepare_8da4w(model):
    """Swap the Linears and the embedding for torchao's fake-quantized modules, in place."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    emb_cfg, lin_cfg = configs()
    untie(model)
    quantize_(model, QATConfig(emb_cfg, step="prepare"), lambda m, fqn: isinstance(m, torch.nn.Embedding))
    quantize_(model, QATConfig(lin_cfg, step="prepare"))
    return model


def release(model):
    """Back to plain modules holding the trained weights (torchao's convert step, without quantizing)."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig
    from torchao.quantization.qat.embedding import FakeQuantizedEmbedding
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    quantize_(model, QATConfig(step="convert"), lambda m, fqn: isinstance(m, (FakeQuantizedLinear,
                                                                            FakeQuantizedEmbedding)))
    return model


def output_weight(model, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden, lm_head weight) as the lm_head's forward sees them: fake-quantized when the model is prepared.

    The training loss multiplies hidden states by ``lm_head.weight`` in chunks instead of calling the
    lm_head (the full-vocabulary logits would not fit), so it must apply the lm_head's quantizers itself;
    per-token activations and per-group weights are unchanged by chunking over positions."""
    head = model.lm_head
    act, wq = getattr(head, "activation_fake_quantizer", None), getattr(head, "weight_fake_quantizer", None)
    return (act(hidden) if act is not None else hidden), (wq(head.weight) if wq is not None else head.weight)


def quantized_eval(model, blocks, teacher_top1=None, desc: str = "8da4w student test"):
    """Held-out perplexity and agreement of ``model`` as the et-8da4w export quantizes it (torchao's fake
    quantization of the export configs equals its eager 8da4w model; the ``.pte`` differs by kernel rounding).
    Works for a PTQ student and a QAD one alike, so the two compare on the same footing."""
    import copy

    from .evaluate import evaluate_lm

    return evaluate_lm(prepare_8da4w(copy.deepcopy(model)), blocks, teacher_top1=teacher_top1, desc=desc)
