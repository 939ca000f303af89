"""The distill stage: teacher + recipe -> student folder (HF format) + distill.json."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import DataError, RecipeError
from ..fileutil import atomic_dir, write_json_atomic
from ..models.encode import embed_torch
from ..models.loading import load_encoder
from ..models.student import build_student, count_parameters, plan_student, save_student
from ..models.teacher import resolve_model
from ..models.vocab_student import oov_stats, plan_vocab, refuse_token_losses, trim_model
from ..progress import say
from ..workspace import Workspace, set_threads
from . import parallel
from .checkpoint import stage_checkpoints
from .compat import check_tokenizers
from .device import runtime
from .qat_schemes import get_qat
from .strategies import describe_layer_map, get_strategy, resolve_layer_map
from .trainer import train

DISTILL_SCHEMA = 1
PROJECTION_FIT_SENTENCES = 2000


def announce_device(spec) -> None:
    """Resolve [distill] device/precision before any work (a missing GPU fails here) and, on a GPU, say so."""
    parallel.configure(spec.device)
    parallel.current()  # under a launcher, binds this process to its local rank's GPU before any teacher pass
    rt = runtime(spec)
    if rt.is_cuda or spec.device != "auto":
        say(rt.describe())


def run_distill(ws: Workspace) -> Path:
    """The distill stage of the recipe's task (see :mod:`edgedistill.tasks`)."""
    from ..tasks import task_of

    announce_device(ws.recipe.distill)
    return task_of(ws.recipe).distill(ws)


def run_embedding(ws: Workspace) -> Path:
    """Sentence-embedding distillation: the student learns the teacher's pooled embedding and block states."""
    r = ws.recipe
    if r.student.base:  # before any model is loaded or trained
        check_tokenizers(r, ws.teacher_ref.folder, resolve_model(r.student.base, r, "[student] base").folder)
    threads = set_threads(r.distill.threads)
    t0 = time.perf_counter()
    teacher, tokenizer = ws.teacher
    splits = ws.splits
    extra = {name: len(texts) for name, texts in ws.extra_texts.items()}
    say(f"data: {r.data.source}, {sum(splits.sizes().values())} sentences "
        f"(train {len(splits.train)} / validation {len(splits.validation)} / test {len(splits.test)}; "
        "distillation sees train only)"
        + (f"; plus unlabelled {', '.join(f'{c} {n}' for n, c in extra.items())} for distillation" if extra else ""))
    # The student is cut from the teacher, or from another model (its own tokenizer and width).
    base, base_tok, base_folder = teacher, tokenizer, ws.teacher_ref.folder
    if r.student.base:
        ref = resolve_model(r.student.base, r, "[student] base")
        base, base_tok = load_encoder(ref.folder)
        base_folder = ref.folder
    plan = plan_student(r.student, base.config)
    train_texts = ws.distill_texts()
    if len(train_texts) < r.distill.batch_size:
        raise DataError(f"only {len(train_texts)} training sentences for batch_size {r.distill.batch_size}; "
                        "use more data or a smaller [distill] batch_size")
    calib = [train_texts[i] for i in ws.sample("train", r.student.calibration_sentences)]
    student = build_student(base, base_tok, plan, calib, r.teacher.max_length, r.student.ffn_selection,
                            device=runtime(r.distill).device)
    vocab, full_tok = None, base_tok
    if r.student.vocab == "trim":
        # From here on the student reads its own, smaller vocabulary; the teacher keeps the full one.
        vocab = plan_vocab(base_tok, train_texts, r.student, r)
        trim_model(student, vocab.trimmed.new_to_old)
        base_tok = vocab.tokenizer
    layer_map = resolve_layer_map(r.distill.layer_map, plan.layers, plan.teacher_layers, r.distill.layer_map_mode)
    strategy = get_strategy(r.distill.strategy)(r.distill.losses, layer_map, r.teacher.pooling, r.teacher.normalize)
    if r.student.base and strategy.needs_hidden:
        hidden = sorted(n for n, e in strategy.entries.items() if "hidden" in e.needs)
        raise RecipeError(f"[distill] losses {hidden} match token-level teacher states, which needs the teacher's "
                          f"tokenizer and layers; a student cut from [student] base = {r.student.base!r} has its own: "
                          "use sentence-level losses (cosine, mse) only")
    refuse_token_losses(vocab, sorted(n for n, e in strategy.entries.items() if "hidden" in e.needs))
    n_teacher, n_student = count_parameters(teacher), count_parameters(student)
    cut_from = f"base {r.student.base}" if r.student.base else "teacher"
    if vocab is not None:
        say(f"vocabulary: {vocab.record['kept_rows']} of {vocab.full_rows} pieces kept "
            f"(counted over {vocab.counted_sentences} sentences)")
    say(f"student: {cut_from} layers {plan.layers} of {plan.teacher_layers}, FFN {plan.intermediate_size} of "
        f"{plan.teacher_intermediate_size} ({r.student.ffn_selection}), {n_student / 1e6:.1f}M params "
        f"(teacher {n_teacher / 1e6:.1f}M); {describe_layer_map(layer_map, r.distill)}; "
        f"losses {strategy.weights}; {threads} threads")

    targets = ws.teacher_outputs(train_texts, layers=strategy.teacher_hidden_indices(),
                                 desc="teacher outputs (train)")
    if r.student.base:
        pos = ws.sample("train", PROJECTION_FIT_SENTENCES)
        s_emb = embed_torch(student, base_tok, [train_texts[i] for i in pos], r.teacher.max_length,
                            r.teacher.pooling, r.teacher.normalize, desc="student embeddings (projection fit)")
        strategy.attach(torch.from_numpy(s_emb), torch.from_numpy(np.asarray(targets.embeddings[pos], np.float32)))
    val_idx = ws.sample("validation", r.distill.eval_sentences)
    val_texts = [ws.texts("validation")[i] for i in val_idx]
    val_targets = ws.teacher_embeddings("validation")[val_idx]
    checkpoints = stage_checkpoints(ws)
    if checkpoints is not None and not checkpoints.check() and parallel.current().is_main:
        checkpoints.start()
    qat = get_qat(r.distill.qat, "encoder")
    if qat.export_scheme:
        say(f"quantization-aware distillation: {qat.description}")
    qat.prepare_fn()(student)
    result = train(student, base_tok, strategy, train_texts, targets, val_texts, val_targets, r.distill,
                   r.teacher.max_length, r.teacher.pooling, r.teacher.normalize,
                   store=checkpoints.gen(1) if checkpoints is not None else None,
                   log_path=ws.run_dir / "train_log.jsonl")
    qat.release_fn()(student)  # plain modules again: the export quantizes the trained weights the same way
    if not parallel.current().is_main:
        return ws.student_dir
    say(f"distilled {result.steps} steps in {result.seconds:.0f} s ({result.sentences_per_second:.0f} sentences/s); "
        f"best validation cosine to teacher {result.best_val_cosine:.4f} at step {result.best_step}")

    record = {
        "schema_version": DISTILL_SCHEMA,
        "edgedistill_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recipe": {"name": r.name, "sha256": r.sha256(), "path": str(r.source_path or "")},
        "teacher": {"source": ws.teacher_ref.source, "sha256": ws.teacher_ref.sha256,
                    "layers": plan.teacher_layers, "params": n_teacher},
        "student": {"base": r.student.base, "projection": _projection_shape(strategy),
                    "kept_teacher_layers": plan.layers, "intermediate_size": plan.intermediate_size,
                    "ffn_selection": r.student.ffn_selection, "params": n_student,
                    "layer_map": {str(k): v for k, v in layer_map.items()}},
        "data": {"source": r.data.source, "splits": splits.sizes(), "extra_texts": extra},
        "strategy": r.distill.strategy,
        "loss_weights": strategy.weights,
        "qat": {"scheme": qat.name, "export_scheme": qat.export_scheme},
        "steps": result.steps,
        "best_step": result.best_step,
        "metrics": {"best_val_cosine": result.best_val_cosine,
                    "final_train_loss": result.history[-1]["loss"] if result.history else None},
        "train_seconds": result.seconds,
        "sentences_per_second": result.sentences_per_second,
        "stage_seconds": time.perf_counter() - t0,
        "threads": threads,
        "losses": result.history,
        "evals": result.evals,
    }
    if vocab is not None:
        from ..models.vocab_student import backend_of

        record["vocab"] = {**vocab.record,
                           "validation": oov_stats(backend_of(full_tok), backend_of(base_tok), val_texts)}
    with atomic_dir(ws.student_dir) as tmp:
        save_student(student, base_tok, base_folder, tmp, vocab=vocab.trimmed if vocab is not None else None)
        write_json_atomic(tmp / "distill.json", record)
    if checkpoints is not None:
        checkpoints.remove()  # the student folder now holds the result
    say(f"student written to {ws.student_dir}")
    return ws.student_dir




def _projection_shape(strategy) -> list[int] | None:
    proj = strategy.projection
    return None if proj is None else [proj.in_features, proj.out_features]
