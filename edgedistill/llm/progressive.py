"""Progressive shrinking: a teacher-assistant chain of ever shallower students (30 -> 20 -> 15 ...).

One cut from 30 to 15 layers loses most of what the model knew before any
training can repair it; smaller cuts, each healed by KD before the next, leave
each stage closer to its teacher (Mirzadeh et al.'s teacher assistants). Each
stage prunes the current model by layer importance measured on that model,
prints the chosen map (in the original teacher's layer numbers) and the
held-out perplexity before and after its training. An intermediate stage is
taught with top-k KD for ``stage_steps`` by the previous stage (``"previous"``)
or the original teacher (``"teacher"``); the last stage is returned untrained,
with the teacher the caller should use for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..errors import RecipeError
from ..progress import say
from ..distill.device import runtime
from .evaluate import evaluate_lm
from .student import plan_student
from .train import TrainConfig, hidden_block_map, train_causal

STAGE_TEACHERS = ("previous", "teacher")


def model_hash(model) -> str:
    """sha256 of a model's weights (names, shapes, dtypes, bytes): the cache identity of an in-memory teacher."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_stages(stages: list[int], n_layers: int | None = None, where: str = "[student]") -> None:
    if not stages:
        raise RecipeError(f"{where} key 'stages': expected a non-empty list of layer counts")
    if any(int(s) < 1 for s in stages):
        raise RecipeError(f"{where} key 'stages': layer counts must be >= 1, got {stages}")
    if any(b >= a for a, b in zip(stages, stages[1:], strict=False)):
        raise RecipeError(f"{where} key 'stages': expected strictly decreasing layer counts, got {stages}")
    if n_layers is not None and stages[0] >= n_layers:
        raise RecipeError(f"{where} key 'stages': the first stage must have fewer layers than the teacher's "
                          f"{n_layers}, got {stages}")


@dataclass
class StageReport:
    layers: list[int]
    """Kept layers in the original teacher's numbering."""
    ppl_before: float
    ppl_after: float | None = None
    steps: int = 0
    teacher: str = ""
    train: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"layers": self.layers, "num_layers": len(self.layers), "ppl_before": round(self.ppl_before, 3),
                "ppl_after": None if self.ppl_after is None else round(self.ppl_after, 3), "steps": self.steps,
                "teacher": self.teacher, "train": self.train}


@dataclass
class ChainResult:
    student: object
    """The last stage, pruned but not yet trained."""
    plan: object
    teacher: object
    """The model that should teach the last stage."""
    teacher_sha: str
    layers: list[int]
    stages: list[StageReport]
    tutor_layers: list[int]
    """For each block of the last stage, the block of ``teacher`` it was copied from (hidden-state transfer)."""


def progressive_shrink(teacher, teacher_sha: str, stages: list[int], *, calib: np.ndarray, train: np.ndarray,
                       val: np.ndarray, test: np.ndarray, cfg: TrainConfig, stage_steps: int,
                       stage_teacher: str = "previous", importance: str = "cosine",
                       intermediate_size: int | None = None, topk_for: Callable | None = None,
                       val_teacher_top1: np.ndarray | None = None, test_teacher_top1: np.ndarray | None = None,
                       ) -> ChainResult:
    """Prune and heal stage by stage; ``topk_for(model, sha, blocks)`` returns the train split's TopK of a teacher."""
    check_stages(stages, teacher.config.num_hidden_layers)
    if stage_teacher not in STAGE_TEACHERS:
        raise RecipeError(f"[student] key 'stage_teacher': expected one of {STAGE_TEACHERS}, got {stage_teacher!r}")
    current, current_sha, orig = teacher, teacher_sha, list(range(teacher.config.num_hidden_layers))
    reports: list[StageReport] = []
    # intermediate stages train in fp32: only the last (the [distill] training) is quantization-aware
    stage_cfg = replace(cfg, mode="kd", max_steps=stage_steps, warmup_steps=min(cfg.warmup_steps, stage_steps),
                        eval_every=min(cfg.eval_every, stage_steps), qat="none")
    for i, n in enumerate(stages):
        last = i == len(stages) - 1
        student, plan = plan_student(current, calib, num_layers=n, importance=importance,
                                     intermediate_size=intermediate_size if last else None)
        orig = [orig[j] for j in plan.layers]
        before = evaluate_lm(student, test, teacher_top1=test_teacher_top1, desc=f"stage {i + 1} test")
        by = "teacher" if stage_teacher == "teacher" or i == 0 else f"stage {i}"
        say(f"stage {i + 1}/{len(stages)}: {n} layers, teacher layers {orig}, held-out ppl before training "
            f"{before.ppl:.2f} (taught by the {by})")
        rep = StageReport(layers=orig, ppl_before=before.ppl, teacher=by)
        reports.append(rep)
        tutor, tutor_sha = (teacher, teacher_sha) if stage_teacher == "teacher" else (current, current_sha)
        # taught by the previous stage, a block's counterpart is where it sat in that stage, not in the teacher
        tutor_layers = orig if tutor is teacher else list(plan.layers)
        if last:
            return ChainResult(student=student, plan=replace(plan, layers=orig), teacher=tutor, teacher_sha=tutor_sha,
                               layers=orig, stages=reports, tutor_layers=tutor_layers)
        if stage_steps > 0:
            topk = topk_for(tutor, tutor_sha, train)
            live = {"teacher": tutor, "hidden_map": hidden_block_map(tutor_layers)} if cfg.hidden_weight > 0 else {}
            student, result = train_causal(student, train, val, stage_cfg, topk=topk,
                                           val_teacher_top1=val_teacher_top1, **live)
            rep.steps, rep.train = result.steps, {"tokens_per_s": result.tokens_per_s, "best_step": result.best_step}
            student.to(runtime(cfg).device)  # the next stage's teacher and importance passes run there
        after = evaluate_lm(student, test, teacher_top1=test_teacher_top1, desc=f"stage {i + 1} test")
        rep.ppl_after = after.ppl
        say(f"stage {i + 1}/{len(stages)}: held-out ppl after {rep.steps} KD steps {after.ppl:.2f}")
        current, current_sha = student, model_hash(student)
    raise AssertionError("unreachable")
