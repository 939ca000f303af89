"""Student construction for Llama-style causal LMs: depth pruning by layer importance, MLP width pruning.

Cutting 24 of SmolLM2's 30 layers evenly leaves a model with perplexity in
the millions; which layers go matters more than how many. Layer importance
is measured on calibration text:

* ``ppl``: the perplexity when that one layer is skipped (costs one forward
  pass per layer; the direct measure of what the layer contributes);
* ``cosine``: 1 - cos(block input, block output) averaged over tokens (one
  forward pass; a layer that barely rotates the residual stream is cheap to
  drop, as in ShortGPT's Block Influence).

The student keeps the most important layers in their original order, and
optionally the MLP channels with the largest mean ``|act(gate) * up|`` times
the norm of their ``down_proj`` column on the same text.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..distill.device import model_device
from ..errors import ModelError, RecipeError
from ..progress import progress
from .evaluate import evaluate_lm

IMPORTANCE = ("ppl", "cosine")
SELECTIONS = IMPORTANCE + ("cosine-iterative", "even")


def _layers(model):
    try:
        return model.model.layers
    except AttributeError:
        raise ModelError(f"{type(model).__name__}: expected a Llama-style causal LM (model.model.layers)") from None


@contextlib.contextmanager
def skipping(model, drop: set[int]):
    """Run the model without the layers in ``drop`` (restored afterwards)."""
    inner = model.model
    full = inner.layers
    n = model.config.num_hidden_layers
    inner.layers = torch.nn.ModuleList([m for i, m in enumerate(full) if i not in drop])
    model.config.num_hidden_layers = len(inner.layers)
    try:
        yield model
    finally:
        inner.layers = full
        model.config.num_hidden_layers = n


@torch.no_grad()
def layer_importance(model, calib: np.ndarray, method: str = "ppl", batch_size: int = 4) -> list[float]:
    """One score per layer; higher = more important."""
    if method not in IMPORTANCE:
        raise RecipeError(f"[llm.student] key 'importance': expected one of {IMPORTANCE}, got {method!r}")
    n = len(_layers(model))
    if method == "ppl":
        base = evaluate_lm(model, calib, batch_size).nll
        scores = []
        for i in progress(range(n), desc="layer importance (skip one)", unit="layer"):
            with skipping(model, {i}):
                scores.append(evaluate_lm(model, calib, batch_size).nll - base)
        return scores
    sums = torch.zeros(n, dtype=torch.float64)
    batches = 0
    for s in range(0, len(calib), batch_size):
        ids = torch.from_numpy(np.asarray(calib[s : s + batch_size], dtype=np.int64)).to(model_device(model))
        hs = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
        for i in range(n):
            # hidden_states[n] is after the final norm; the last block's raw output is not exposed, so its
            # input is compared with the normed output (scale-free under cosine).
            cos = torch.nn.functional.cosine_similarity(hs[i].float(), hs[i + 1].float(), dim=-1)
            sums[i] += (1.0 - cos).mean().item()
        batches += 1
    return (sums / max(batches, 1)).tolist()


def choose_layers(scores: list[float], keep: int) -> list[int]:
    """The ``keep`` highest-scoring layers, in model order."""
    if not 1 <= keep <= len(scores):
        raise RecipeError(f"[llm.student] key 'num_layers': expected 1..{len(scores)}, got {keep}")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(order[:keep])


@torch.no_grad()
def iterative_cosine(model, calib: np.ndarray, keep: int, batch_size: int = 4) -> list[int]:
    """Drop the least important layer, re-score the rest on the pruned model, repeat until ``keep`` remain.

    One-shot scores miss interactions: once a layer is gone, its neighbours' roles change.
    """
    alive = list(range(len(_layers(model))))
    choose_layers([0.0] * len(alive), keep)  # validates keep
    steps = progress(range(len(alive) - keep), desc="layer importance (iterative cosine)", unit="layer")
    for _ in steps:
        with skipping(model, set(range(len(_layers(model)))) - set(alive)):
            scores = layer_importance(model, calib, "cosine", batch_size)
        alive.pop(min(range(len(alive)), key=lambda j: (scores[j], j)))
    return alive


def evenly_spaced(n_layers: int, keep: int) -> list[int]:
    """The naive map: ``keep`` layers evenly spaced, first and last included."""
    if keep == 1:
        return [n_layers - 1]
    return sorted({round(i * (n_layers - 1) / (keep - 1)) for i in range(keep)})


@torch.no_grad()
def mlp_importance(model, calib: np.ndarray, layers: list[int], batch_size: int = 4) -> dict[int, torch.Tensor]:
    """Per kept layer, one score per MLP channel: mean |down_proj input| x ||down_proj column||."""
    acc: dict[int, torch.Tensor] = {}
    hooks = []
    blocks = _layers(model)
    for i in layers:
        def hook(mod, args, i=i):
            a = args[0].detach().abs().float().reshape(-1, args[0].shape[-1]).sum(0)
            acc[i] = acc.get(i, 0) + a
        hooks.append(blocks[i].mlp.down_proj.register_forward_pre_hook(hook))
    try:
        for s in range(0, len(calib), batch_size):
            ids = torch.from_numpy(np.asarray(calib[s : s + batch_size], dtype=np.int64)).to(model_device(model))
            model(input_ids=ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return {i: (acc[i] * blocks[i].mlp.down_proj.weight.float().norm(dim=0)).cpu() for i in layers}


@dataclass
class StudentPlan:
    layers: list[int]
    intermediate_size: int
    scores: list[float] | None = None
    method: str = ""

    def describe(self) -> str:
        return f"keep teacher layers {self.layers} ({len(self.layers)}), MLP width {self.intermediate_size}"


def build_student(teacher, layers: list[int], intermediate_size: int | None = None,
                  channel_scores: dict[int, torch.Tensor] | None = None):
    """A new LlamaForCausalLM with the chosen teacher layers (renumbered) and, if asked, fewer MLP channels."""
    from transformers import AutoModelForCausalLM

    blocks = _layers(teacher)
    if any(not 0 <= i < len(blocks) for i in layers) or len(set(layers)) != len(layers):
        raise RecipeError(f"[llm.student] key 'layers': expected distinct indices in 0..{len(blocks) - 1}, "
                          f"got {layers}")
    cfg = copy.deepcopy(teacher.config)
    width = intermediate_size or cfg.intermediate_size
    if not 1 <= width <= cfg.intermediate_size:
        raise RecipeError(f"[llm.student] key 'intermediate_size': expected 1..{cfg.intermediate_size}, got {width}")
    cfg.num_hidden_layers = len(layers)
    cfg.intermediate_size = width
    if isinstance(getattr(cfg, "layer_types", None), list):
        cfg.layer_types = [cfg.layer_types[i] for i in layers]
    student = AutoModelForCausalLM.from_config(cfg, dtype=next(teacher.parameters()).dtype)
    src = {k: v.detach().cpu() for k, v in teacher.state_dict().items()}  # the student is built on the CPU
    dst = {}
    for key, val in src.items():
        if not key.startswith("model.layers."):
            dst[key] = val
    for j, i in enumerate(layers):
        keep = None
        if width < teacher.config.intermediate_size:
            if channel_scores is None or i not in channel_scores:
                raise ValueError(f"width pruning needs channel scores for layer {i}")
            keep = channel_scores[i].topk(width).indices.sort().values
        prefix = f"model.layers.{i}."
        for key, val in src.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            if keep is not None and name in ("mlp.gate_proj.weight", "mlp.up_proj.weight"):
                val = val[keep]
            elif keep is not None and name == "mlp.down_proj.weight":
                val = val[:, keep]
            dst[f"model.layers.{j}.{name}"] = val.clone()
    missing, unexpected = student.load_state_dict(dst, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and cfg.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelError(f"student weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if cfg.tie_word_embeddings:
        student.tie_weights()
    return student.eval()


def plan_student(teacher, calib: np.ndarray, num_layers: int | None = None, layers: list[int] | None = None,
                 importance: str = "ppl", intermediate_size: int | None = None, batch_size: int = 4):
    """(student, plan): explicit ``layers``, or the ``num_layers`` most important ones."""
    scores = None
    if layers is None:
        if num_layers is None:
            num_layers = max(1, math.ceil(len(_layers(teacher)) / 2))
        if importance == "even":
            layers = evenly_spaced(len(_layers(teacher)), num_layers)
        elif importance == "cosine-iterative":
            layers = iterative_cosine(teacher, calib, num_layers, batch_size)
        else:
            scores = layer_importance(teacher, calib, importance, batch_size)
            layers = choose_layers(scores, num_layers)
    channel = None
    width = intermediate_size or teacher.config.intermediate_size
    if width < teacher.config.intermediate_size:
        channel = mlp_importance(teacher, calib, layers, batch_size)
    student = build_student(teacher, layers, width, channel)
    return student, StudentPlan(layers=layers, intermediate_size=width, scores=scores, method=importance)
