"""Build a student from the teacher: fewer layers, optionally a narrower FFN.

The student is the teacher's own architecture class with a smaller config, so
it saves as a plain Hugging Face folder that ``transformers`` loads without
edgedistill. Kept layers start from the teacher's weights; a narrower FFN keeps
the teacher's most important neurons (mean |activation| on calibration text
times the norm of the neuron's output weights).
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError, RecipeError

# Files that make the student folder load in sentence-transformers too.
_ST_FILES = ["modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json"]


@dataclass
class StudentPlan:
    layers: list[int]
    intermediate_size: int
    teacher_layers: int
    teacher_intermediate_size: int


def plan_student(spec, teacher_config) -> StudentPlan:
    n = teacher_config.num_hidden_layers
    width = teacher_config.intermediate_size
    if spec.layers is not None:
        layers = list(spec.layers)
        bad = [i for i in layers if i >= n]
        if bad:
            raise RecipeError(f"[student] key 'layers': layer {bad[0]} does not exist (the teacher has layers 0..{n - 1})")
    else:
        k = spec.num_layers or max(1, n // 2)
        if k > n:
            raise RecipeError(f"[student] key 'num_layers': {k} is more than the teacher's {n} layers")
        # Evenly spaced, always ending with the last layer (its outputs are what the embedding is made of).
        layers = sorted({round(n - 1 - i * (n - 1) / max(k - 1, 1)) for i in range(k)}) if k > 1 else [n - 1]
    size = spec.intermediate_size or width
    if size > width:
        raise RecipeError(f"[student] key 'intermediate_size': {size} is wider than the teacher's {width}")
    return StudentPlan(layers=layers, intermediate_size=size, teacher_layers=n, teacher_intermediate_size=width)


def _layers_of(model):
    enc = getattr(model, "encoder", None)
    layers = getattr(enc, "layer", None)
    if layers is None:
        raise ModelError(f"{type(model).__name__}: student construction needs an encoder with 'encoder.layer' "
                         "(BERT, RoBERTa, MPNet, ...)")
    return layers


def ffn_importance(model, tokenizer, texts, layers: list[int], max_length: int, device=None):
    """Per kept layer, a score per FFN neuron: mean |activation| x ||output weights||.

    With ``device`` the calibration pass runs there (the model goes back afterwards); scores are on the CPU."""
    import contextlib

    from ..distill.device import on_device, to_device

    with on_device(model, device) if device is not None else contextlib.nullcontext():
        return _ffn_importance(model, tokenizer, texts, layers, max_length, to_device)


def _ffn_importance(model, tokenizer, texts, layers, max_length, to_device):
    import torch

    from ..distill.device import model_device

    dev = model_device(model)

    blocks = _layers_of(model)
    sums = {i: None for i in layers}
    count = 0
    hooks = []

    def hook_for(i):
        def hook(_mod, _inp, out):
            a = out.detach().abs().flatten(0, 1)
            sums[i] = a.sum(0) if sums[i] is None else sums[i] + a.sum(0)

        return hook

    for i in layers:
        hooks.append(blocks[i].intermediate.register_forward_hook(hook_for(i)))
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                feats = tokenizer(list(texts[start : start + 32]), padding=False if len(texts) == 1 else True,
                                  truncation=True, max_length=max_length, return_tensors="pt")
                # Padding positions are counted too; their share is small and equal for all neurons.
                model(**to_device(feats, dev))
                count += int(feats["attention_mask"].numel())
    finally:
        for h in hooks:
            h.remove()
    scores = {}
    for i in layers:
        out_norm = blocks[i].output.dense.weight.detach().norm(dim=0)
        scores[i] = ((sums[i] / max(count, 1)) * out_norm).cpu()
    return scores


def build_student(teacher, tokenizer, plan: StudentPlan, calibration_texts, max_length: int, selection: str,
                  device=None):
    """A new model of the teacher's class with the planned layers and FFN width (on the CPU; ``device``:
    where the FFN-importance calibration pass runs)."""
    import torch

    _layers_of(teacher)
    cfg = copy.deepcopy(teacher.config)
    cfg.num_hidden_layers = len(plan.layers)
    cfg.intermediate_size = plan.intermediate_size
    # Distillation regresses onto fixed targets; dropout only adds noise to them.
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if hasattr(cfg, key):
            setattr(cfg, key, 0.0)
    keep = {}
    if plan.intermediate_size < plan.teacher_intermediate_size:
        if selection == "importance":
            scores = ffn_importance(teacher, tokenizer, calibration_texts, plan.layers, max_length, device)
            keep = {i: torch.sort(torch.topk(scores[i], plan.intermediate_size).indices).values for i in plan.layers}
        else:
            keep = {i: torch.arange(plan.intermediate_size) for i in plan.layers}

    src = teacher.state_dict()
    new_index = {old: new for new, old in enumerate(plan.layers)}
    state = {}
    for key, value in src.items():
        if key.startswith("encoder.layer."):
            old = int(key.split(".")[2])
            if old not in new_index:
                continue
            rest = key.split(".", 3)[3]
            if old in keep:
                if rest.startswith("intermediate.dense."):
                    value = value[keep[old]]
                elif rest == "output.dense.weight":
                    value = value[:, keep[old]]
            key = f"encoder.layer.{new_index[old]}.{rest}"
        state[key] = value.clone()
    student = type(teacher)(cfg)
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(f"student construction could not map teacher weights (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return student


def save_student(student, tokenizer, teacher_folder: Path, dest: Path, vocab=None) -> None:
    """``vocab``: the student's :class:`~edgedistill.models.vocab.VocabTrim` when its vocabulary was trimmed."""
    student.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    if vocab is not None:
        from .vocab_student import write_vocab_files

        write_vocab_files(Path(dest), vocab)
    for rel in _ST_FILES:
        src = Path(teacher_folder) / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / rel)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
