"""The distill stage for ``strategy = "classification"``: classifier teacher -> student classifier.

The teacher is any local HF ``...ForSequenceClassification`` folder (``edgedistill teacher
classifier`` builds one); the student keeps the recipe's teacher blocks plus the teacher's
head, and trains on the labelled train split. With ``generations = N > 1`` it is
born-again distillation: generation k's student, with the same architecture, is the
teacher of generation k + 1 (its logits replace the teacher's).

Cross-task transfer: the teacher may also be a plain encoder trained for another task (e.g.
the packaged sentence-embedding models, which have no classification head). It then supervises
through its hidden states only (``fitnets`` + ``hard_ce``); a logit loss is refused. The
student may be cut from another model (``[student] base``), with its own width and tokenizer.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import DataError, RecipeError, TrainingError
from ..fileutil import atomic_dir, write_json_atomic, write_text_atomic
from ..models.classifier import (
    classifier_from_encoder,
    config_labels,
    is_classifier_folder,
    labelled_split,
    load_classifier,
)
from ..models.loading import load_encoder
from ..models.student import build_student, count_parameters, plan_student
from ..models.teacher import resolve_model
from ..models.vocab_student import (
    backend_of,
    oov_stats,
    plan_vocab,
    refuse_token_losses,
    trim_model,
    write_vocab_files,
)
from ..progress import say
from ..workspace import set_threads
from . import multi_teacher, parallel
from . import strategy_exits as exits
from .assistants import train_chain
from .checkpoint import Checkpoints, stage_checkpoints
from .cls_trainer import ClsResult, NonFiniteLoss, accuracy, logits_of, train_classifier
from .compat import check_tokenizers
from .curriculum import curriculum_batches, easy_first
from .qat_schemes import get_qat
from .strategies import describe_layer_map, get_strategy, resolve_layer_map
from .strategy_cls import ClassificationStrategy, TeacherCache
from .device import runtime
from .teacher_cache import teacher_logits, teacher_targets

UNLABELLED = -100
"""The class id of a ``[data] extra_texts`` sentence: label losses skip rows below 0 (:mod:`.losses_logits`)."""


def build_classifier_student(teacher, tokenizer, plan, calibration_texts, max_length: int, selection: str,
                             device=None):
    """The teacher's kept blocks (and narrowed FFNs) under a copy of the teacher's head."""
    base = build_student(teacher.base_model, tokenizer, plan, calibration_texts, max_length, selection, device)
    student = classifier_from_encoder(base, teacher.config.num_labels,
                                      {int(k): v for k, v in teacher.config.id2label.items()})
    student.classifier.load_state_dict(teacher.classifier.state_dict())
    return student


def deliverable(model):
    """The model a run hands over: itself, peer 0 of a peer group, or the student under its early exits."""
    peers = getattr(model, "peers", None)
    if peers is not None:
        return peers[0]
    return model.student if hasattr(model, "exits") else model


def deliverable_state(state: dict) -> dict:
    """The handed-over model's part of a training module's state dict (see :func:`deliverable`)."""
    out = {}
    for k, v in state.items():
        if k.startswith("exits.") or (k.startswith("peers.") and not k.startswith("peers.0.")):
            continue
        out[k.removeprefix("peers.0.").removeprefix("student.")] = v
    return out


class ClassificationRun:
    """Teacher, data and caches shared by every training run on one workspace (the benchmark
    reuses one instance across methods and seeds)."""

    def __init__(self, ws):
        self.ws = ws
        r = ws.recipe
        self.rt = runtime(r.distill)
        """Where teacher passes and training run."""
        self.teacher_has_head = is_classifier_folder(ws.teacher_ref.folder)
        if self.teacher_has_head:
            self.teacher, self.teacher_tokenizer = load_classifier(ws.teacher_ref.folder)
            # Named labels in the data map through the teacher's own classes, so its logits line up.
            label2id = {v: k for k, v in config_labels(self.teacher.config).items()}
        else:
            label2id = None
        self.train_texts, self.train_labels = labelled_split(ws, "train", label2id)
        self.labelled_train = len(self.train_texts)
        present = set(self.train_labels.tolist())
        extra = [t for texts in ws.extra_texts.values() for t in texts]
        if extra:
            # [data] extra_texts: the teacher supervises them; the label losses skip their rows (labels < 0).
            self.train_texts = self.train_texts + extra
            self.train_labels = np.concatenate([self.train_labels, np.full(len(extra), UNLABELLED, np.int64)])
        if not self.teacher_has_head:
            # A teacher from another task: only its encoder's states are used; the head is a placeholder.
            encoder, self.teacher_tokenizer = load_encoder(ws.teacher_ref.folder)
            torch.manual_seed(r.distill.seed)
            names = ws.label_names
            n = max(2, len(names), int(self.train_labels.max()) + 1)
            self.teacher = classifier_from_encoder(encoder, n, {i: names[i] if i < len(names) else str(i)
                                                                for i in range(n)}).eval()
        self.base = None
        self.tokenizer = self.teacher_tokenizer
        if r.student.base:
            base_folder = resolve_model(r.student.base, r, "[student] base").folder
            check_tokenizers(r, ws.teacher_ref.folder, base_folder)
            self.base, self.tokenizer = load_encoder(base_folder)
        self.vocab = None
        """The student's trimmed vocabulary (``[student] vocab = "trim"``): it tokenizes everything the student sees."""
        self.full_tokenizer = self.tokenizer
        if r.student.vocab == "trim":
            self.vocab = plan_vocab(self.tokenizer, self.train_texts, r.student, r)
            self.tokenizer = self.vocab.tokenizer
        self.pad_id = self.tokenizer.pad_token_id or 0
        val_texts, val_labels = labelled_split(ws, "validation", label2id)
        pick = np.sort(np.random.default_rng(0).permutation(len(val_texts))[: r.distill.eval_sentences])
        self.val_labels = val_labels[pick]
        self.test_texts, self.test_labels = labelled_split(ws, "test", label2id)
        n_cls = self.teacher.config.num_labels
        if self.labelled_train < r.distill.batch_size or not len(pick) or not len(self.test_texts):
            raise DataError(f"[data] {r.data.source}: {self.labelled_train} labelled training sentences, "
                            f"{len(pick)} validation, {len(self.test_texts)} test; classification distillation "
                            "needs labels (or scores) in every split")
        if max(present) >= n_cls:
            raise DataError(f"[data] labels go up to {max(present)} but the teacher "
                            f"{ws.teacher_ref.folder} has {n_cls} classes")
        tok = lambda texts: self.tokenizer(list(texts), truncation=True, max_length=r.teacher.max_length)  # noqa: E731
        self.enc = tok(self.train_texts)
        self.enc_val = tok([val_texts[i] for i in pick])
        self.vocab_validation = (oov_stats(backend_of(self.full_tokenizer), backend_of(self.tokenizer),
                                           [val_texts[i] for i in pick]) if self.vocab is not None else None)
        self.enc_test = tok(self.test_texts)
        self.plan = plan_student(r.student, (self.base or self.teacher).config)
        n_teacher = self.teacher.config.num_hidden_layers
        # A student cut from another model has no "copied from" teacher layer: spread it over the teacher.
        self.layer_map_mode = "uniform" if self.base is not None and r.distill.layer_map_mode == "copied" else \
            r.distill.layer_map_mode
        self.layer_map = resolve_layer_map(r.distill.layer_map, self.plan.layers, n_teacher, self.layer_map_mode)
        self.extra_teachers = {}
        """``[distill] teachers`` loaded so far (multi-teacher KD), by path."""
        self.links: list[dict] = []
        """Teacher-assistant chain records of the last ``train`` (empty without assistants)."""

    def build_student(self, plan):
        student = self._cut_student(plan)
        if self.vocab is not None:
            trim_model(student, self.vocab.trimmed.new_to_old)
        return student

    def _cut_student(self, plan):
        r = self.ws.recipe
        calib = [self.train_texts[i] for i in self.ws.sample("train", r.student.calibration_sentences)
                 if i < len(self.train_texts)] or self.train_texts[:32]
        if self.base is not None:
            base = build_student(self.base, self.tokenizer, plan, calib, r.teacher.max_length, r.student.ffn_selection,
                                 self.rt.device)
            torch.manual_seed(r.distill.seed)
            return classifier_from_encoder(base, self.teacher.config.num_labels,
                                           {int(k): v for k, v in self.teacher.config.id2label.items()})
        return build_classifier_student(self.teacher, self.teacher_tokenizer, plan, calib, r.teacher.max_length,
                                        r.student.ffn_selection, self.rt.device)

    @cached_property
    def initial_student(self):
        return self.build_student(self.plan)

    @cached_property
    def teacher_test_accuracy(self) -> float | None:
        if not self.teacher_has_head:
            return None
        z = teacher_logits(self.teacher, self.teacher_tokenizer, self.ws.teacher_ref, self.test_texts,
                           self.ws.recipe.teacher.max_length, desc="teacher logits (test)", rt=self.rt)
        return float((np.asarray(z).argmax(1) == self.test_labels).mean())

    def strategy(self, spec, layer_map=None, student=None) -> ClassificationStrategy:
        strategy = get_strategy(spec.strategy)(spec, layer_map or self.layer_map,
                                               (student or self.initial_student).config, self.teacher.config,
                                               self.teacher.base_model.encoder.layer)
        wants = [n for n, e in strategy.entries.items() if "logits" in e.needs]
        teacher_free = strategy.teacher_free
        if not self.teacher_has_head and ((wants and not teacher_free) or spec.options.curriculum != "none"
                                          or spec.options.assistants):
            what = f"loss(es) {wants}" if wants and not teacher_free else \
                ("curriculum" if spec.options.curriculum != "none" else "assistants")
            raise RecipeError(f"[teacher] {self.ws.teacher_ref.folder} is an encoder without a classification head, "
                              f"so it has no logits for [distill] {what}; for cross-task transfer use feature "
                              "losses (fitnets) + hard_ce, or build a classifier teacher with 'edgedistill teacher "
                              "classifier'")
        untaught = teacher_free or not (strategy.needs_logits or strategy.needs_hidden or strategy.needs_qkv)
        if len(self.train_texts) > self.labelled_train and (untaught or spec.options.curriculum != "none"):
            why = "no loss of this run learns from a teacher's outputs" if untaught else \
                "a curriculum ranks sentences by their label's teacher loss"
            raise RecipeError(f"[data] extra_texts {self.ws.recipe.data.extra_texts} adds unlabelled sentences, "
                              f"but {why}: remove extra_texts or use a teacher loss without curriculum")
        token_level = sorted(n for n, e in strategy.entries.items() if e.needs & {"hidden", "qkv"})
        if not token_level and strategy.teacher_hidden_indices():  # the strategy itself matches token states
            token_level = [f"strategy {spec.strategy}"]
        refuse_token_losses(self.vocab, token_level)
        strategy.bind_tokenizer(self.tokenizer)
        return strategy

    def teacher_logits_train(self) -> np.ndarray:
        return teacher_logits(self.teacher, self.teacher_tokenizer, self.ws.teacher_ref, self.train_texts,
                              self.ws.recipe.teacher.max_length, desc="teacher logits (train)", rt=self.rt)

    def batches(self, spec, logits):
        """The curriculum's batch provider, or None for the trainer's own shuffled batches."""
        if spec.options.curriculum == "none":
            return None
        order = easy_first(logits, self.train_labels, spec.options.curriculum)
        return lambda rng: curriculum_batches(order, spec.batch_size, spec.max_steps, spec.options.curriculum_start,
                                              spec.options.curriculum_fraction, rng)

    def cache(self, strategy, spec=None) -> TeacherCache:
        t = self.ws.recipe.teacher
        cache = TeacherCache()
        if strategy.needs_logits and not strategy.teacher_free:
            cache.logits = self.teacher_logits_train()
        layers = strategy.teacher_hidden_indices()
        if layers:
            cache.targets = teacher_targets(self.teacher.base_model, self.teacher_tokenizer, self.ws.teacher_ref,
                                            self.train_texts, t.max_length, "cls", False, layers=layers,
                                            desc="teacher token states (train)", rt=self.rt)
        if spec is not None and spec.options.teachers and not strategy.teacher_free:
            cache = multi_teacher.ensemble_cache(self, strategy, spec, cache)
        return cache

    def train(self, spec, desc: str = "distilling", checkpoints: Checkpoints | None = None, log_path=None):
        """Train ``spec.options.generations`` students; returns (last student, per-generation results).

        With ``checkpoints``, finished generations and the last checkpoint of the running one
        are picked up again, so a killed run continues where it stopped."""
        main = parallel.current().is_main
        strategy = self.strategy(spec)
        cache = self.cache(strategy, spec)
        self.links = []
        if spec.options.assistants:
            logits = cache.logits if cache.logits is not None else self.teacher_logits_train()
            cache.logits, self.links = train_chain(self, spec, logits, desc)
        gens = []
        student = None
        for gen in range(1, spec.options.generations + 1):
            store = checkpoints.gen(gen) if checkpoints is not None else None
            done = store.finished() if store is not None else None
            if gen > 1:
                # Born-again: the previous generation's predictions are the soft targets.
                cache = TeacherCache(logits=logits_of(student, self.enc, self.pad_id), targets=cache.targets)
                # Seeded so a generation started after a resumed one initialises its strategy
                # (FitNets projections) exactly as an uninterrupted run does.
                torch.manual_seed(spec.seed + gen)
                strategy = self.strategy(spec)
            student = copy.deepcopy(self.initial_student)
            if done is not None:
                weights, rec = done
                student.load_state_dict(weights)
                student.eval()
                gens.append({"generation": gen, "result": ClsResult(best_state=weights, **rec["result"]),
                             "test_accuracy": rec["test_accuracy"]})
                continue
            student = strategy.prepare_student(student)
            qat = get_qat(spec.qat, "encoder")
            qat.prepare_fn()(student)  # fake quantization of the export scheme, also in validation and test
            label = f"{desc} (generation {gen}/{spec.options.generations})" if spec.options.generations > 1 else desc
            order_by = cache.logits if cache.logits is not None or spec.options.curriculum == "none" \
                else self.teacher_logits_train()
            res = train_classifier(student, strategy, self.enc, self.train_labels, cache, self.enc_val,
                                   self.val_labels, spec, self.pad_id, desc=label, store=store, log_path=log_path,
                                   log_tags={"generation": gen} if spec.options.generations > 1 else None,
                                   batches=self.batches(spec, order_by))
            test_acc = accuracy(student, self.enc_test, self.test_labels, self.pad_id) if main else None
            gens.append({"generation": gen, "result": res, "test_accuracy": test_acc})
            if main:
                strategy.calibrate_extras(student, self.enc_val, self.val_labels, self.pad_id)
                extras = strategy.evaluate_extras(student, self.enc_test, self.test_labels, self.pad_id)
                if extras is not None:
                    gens[-1]["exits"] = extras
            student = qat.release_fn()(deliverable(student))
            if store is not None and main:
                summary = {k: v for k, v in vars(res).items() if k != "best_state"}
                store.finish(student.state_dict(), {"result": summary, "test_accuracy": test_acc})
        return student, strategy, gens


def run_classify(ws) -> Path:
    r = ws.recipe
    threads = set_threads(r.distill.threads)
    t0 = time.perf_counter()
    run = ClassificationRun(ws)
    student0 = run.initial_student
    n_teacher, n_student = count_parameters(run.teacher), count_parameters(student0)
    unlabelled = len(run.train_texts) - run.labelled_train
    say(f"classification: {run.labelled_train} labelled training sentences"
        + (f" + {unlabelled} unlabelled ([data] extra_texts)" if unlabelled else "") + "; student keeps teacher layers "
        f"{run.plan.layers} of {run.plan.teacher_layers} ({n_student / 1e6:.1f}M params, teacher "
        f"{n_teacher / 1e6:.1f}M); {describe_layer_map(run.layer_map, r.distill, run.layer_map_mode)}; "
        f"losses {dict(r.distill.losses)}; {threads} threads")
    d = r.distill
    main = parallel.current().is_main
    checkpoints = stage_checkpoints(ws)
    if checkpoints is not None and not checkpoints.check() and main:
        checkpoints.start()
    try:
        student, strategy, gens = run.train(d, checkpoints=checkpoints, log_path=ws.run_dir / "train_log.jsonl")
    except NonFiniteLoss as e:
        if not main:
            raise
        keep = ws.run_dir / "student.last-good"
        student0.load_state_dict(deliverable_state(e.best_state))
        with atomic_dir(keep) as tmp:
            student0.save_pretrained(tmp, safe_serialization=True)
            run.tokenizer.save_pretrained(tmp)
            if run.vocab is not None:
                write_vocab_files(tmp, run.vocab.trimmed)
        raise TrainingError(f"{e}; the last good checkpoint (step {e.best_step}) is in {keep}") from None
    if not main:
        return ws.student_dir
    last = gens[-1]
    res = last["result"]
    teacher_acc = run.teacher_test_accuracy
    say(f"distilled {res.steps} steps x {len(gens)} generation(s) in {sum(g['result'].seconds for g in gens):.0f} s; "
        f"validation accuracy {res.best_val_accuracy:.4f} (step {res.best_step}); test accuracy "
        f"{last['test_accuracy']:.4f} vs teacher " + (f"{teacher_acc:.4f}" if teacher_acc is not None else
                                                      "n/a (an encoder without a classification head)"))
    record = {
        "schema_version": 1,
        "edgedistill_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": "classification",
        "recipe": {"name": r.name, "sha256": r.sha256(), "path": str(r.source_path or "")},
        "teacher": {"source": ws.teacher_ref.source, "sha256": ws.teacher_ref.sha256,
                    "layers": run.plan.teacher_layers, "params": n_teacher, "test_accuracy": teacher_acc},
        "student": {"kept_teacher_layers": run.plan.layers, "intermediate_size": run.plan.intermediate_size,
                    "params": n_student, "layer_map": {str(k): v for k, v in run.layer_map.items()}},
        "data": {"source": r.data.source, "splits": ws.splits.sizes(),
                 "extra_texts": {name: len(texts) for name, texts in ws.extra_texts.items()}},
        "strategy": r.distill.strategy,
        "qat": r.distill.qat,
        "loss_weights": strategy.weights,
        "final_weights": strategy.final_weights,
        "options": strategy.loss_params,
        "strategy_options": dataclasses.asdict(r.distill.options),
        "assistants": run.links,
        "generations": [{"generation": g["generation"], "best_step": g["result"].best_step,
                         "best_val_accuracy": g["result"].best_val_accuracy, "test_accuracy": g["test_accuracy"],
                         "train_seconds": g["result"].seconds} for g in gens],
        "steps": res.steps,
        "best_step": res.best_step,
        "metrics": {"best_val_accuracy": res.best_val_accuracy, "test_accuracy": last["test_accuracy"],
                    "teacher_test_accuracy": teacher_acc,
                    "retention": last["test_accuracy"] / teacher_acc if teacher_acc else None,
                    "final_train_loss": res.history[-1]["loss"] if res.history else None},
        "train_seconds": sum(g["result"].seconds for g in gens),
        "sentences_per_second": res.sentences_per_second,
        "stage_seconds": time.perf_counter() - t0,
        "threads": threads,
        "losses": res.history,
        "evals": res.evals,
    }
    if run.vocab is not None:
        record["vocab"] = {**run.vocab.record, "validation": run.vocab_validation}
    if "exits" in last:
        record["early_exits"] = {"layers": strategy.layers, "files": [exits.WEIGHTS, exits.META],
                                 "test_accuracy": last["exits"]}
    if r.distill.options.teachers:
        record["multi_teacher"] = multi_teacher.ensemble_test_accuracy(run, r.distill)
    with atomic_dir(ws.student_dir) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        run.tokenizer.save_pretrained(tmp)
        if run.vocab is not None:
            write_vocab_files(tmp, run.vocab.trimmed)
        write_json_atomic(tmp / "distill.json", record)
        if "exits" in last:
            strategy.save_extras(tmp, last["exits"])
    if checkpoints is not None:
        checkpoints.remove()  # the student folder now holds the result; resuming is no longer needed
    from ..report.html import render_training_html

    write_text_atomic(ws.run_dir / "training.html", render_training_html(record, r.name))
    say(f"student classifier written to {ws.student_dir}; loss and validation curves in {ws.run_dir}/training.html")
    return ws.student_dir
