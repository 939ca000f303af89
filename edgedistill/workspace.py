"""A run folder and what the stages share while working on it.

Stages communicate only through files in the run folder (student/, export/,
bundles/, report.*). Within one process the workspace also memoises the
expensive, read-only things several stages need: the split corpus, the
verified teacher and its cached outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .data import Splits, load_examples, split_examples
from .data.base import probe_labels
from .recipe import Recipe


@dataclass
class ProbeSet:
    """Probe-eligible rows of one split: positions into the split's text list, and labels."""

    idx: np.ndarray
    labels: np.ndarray


class Workspace:
    def __init__(self, recipe: Recipe, run_dir: str | Path):
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self._teacher_emb: dict[str, np.ndarray] = {}

    # --- paths -------------------------------------------------------------
    @property
    def student_dir(self) -> Path:
        return self.run_dir / "student"

    @property
    def export_dir(self) -> Path:
        return self.run_dir / "export"

    def bundle_dir(self, target: str) -> Path:
        return self.run_dir / "bundles" / target

    @property
    def report_dir(self) -> Path:
        return self.run_dir / "report"

    # --- shared inputs -----------------------------------------------------
    @cached_property
    def splits(self) -> Splits:
        return split_examples(load_examples(self.recipe.data, self.recipe), self.recipe.data.split)

    def texts(self, split: str) -> list[str]:
        return [ex.text for ex in getattr(self.splits, split)]

    @cached_property
    def extra_texts(self) -> dict[str, list[str]]:
        """``[data] extra_texts``: source -> unlabelled sentences for the distillation set, none of them a
        sentence of the labelled splits (see :mod:`edgedistill.data.extra`)."""
        d = self.recipe.data
        if not d.extra_texts:
            return {}
        from .data.extra import load_extra

        s = self.splits
        labelled = {" ".join(ex.text.split()) for part in (s.train, s.validation, s.test) for ex in part}
        return load_extra(d.extra_texts, d.extra_texts_limit, labelled)

    def distill_texts(self) -> list[str]:
        """What the student is distilled on: the train split, then the extra texts (positions below
        ``len(texts("train"))`` are the train split's, so :meth:`sample` positions stay valid)."""
        return self.texts("train") + [t for texts in self.extra_texts.values() for t in texts]

    def sample(self, split: str, n: int) -> np.ndarray:
        """Up to ``n`` positions of a split, a fixed pseudo-random choice in ascending order.

        Corpus files are often grouped by domain and sorted by label, so a
        prefix would be a biased sample.
        """
        total = len(getattr(self.splits, split))
        rng = np.random.default_rng(0)
        return np.sort(rng.permutation(total)[: min(n, total)])

    @cached_property
    def label_names(self) -> list[str]:
        """Class names of the data (see :mod:`edgedistill.data.labels`); ids index this list."""
        from .data.labels import SCORE_LABELS, label_names

        s = self.splits
        found = label_names((ex.label for part in (s.train, s.validation, s.test) for ex in part),
                            f"[data] {self.recipe.data.path or self.recipe.data.source}")
        return found if found is not None else list(SCORE_LABELS)

    @cached_property
    def has_labels(self) -> bool:
        """True when the data carries explicit labels (not only scores)."""
        s = self.splits
        return any(ex.label is not None for part in (s.train, s.validation, s.test) for ex in part)

    def probe_set(self, split: str) -> ProbeSet:
        idx, labels = probe_labels(getattr(self.splits, split), self.recipe.data.probe_min_abs_score,
                                   self.label_names if self.has_labels else None)
        return ProbeSet(np.asarray(idx, dtype=np.int64), np.asarray(labels, dtype=np.int64))

    @cached_property
    def teacher_ref(self):
        from .models.teacher import resolve_teacher

        return resolve_teacher(self.recipe.teacher, self.recipe)

    @cached_property
    def teacher(self):
        """(model, tokenizer) of the verified teacher."""
        from .models.loading import load_encoder

        return load_encoder(self.teacher_ref.folder)

    def teacher_outputs(self, texts: list[str], layers=(), desc: str = "teacher outputs"):
        from .distill.device import runtime
        from .distill.teacher_cache import teacher_targets

        t = self.recipe.teacher
        model, tok = self.teacher
        # A pass still to run runs on [distill] device (large batches on a GPU); the cache on disk is the same.
        return teacher_targets(model, tok, self.teacher_ref, texts, t.max_length, t.pooling, t.normalize,
                               layers=layers, desc=desc, rt=runtime(self.recipe.distill))

    def fit_probe(self, embed, limit: int | None = None):
        """Logistic-regression probe on the probe-eligible training sentences (a fixed subset of at
        most ``limit``), C chosen on validation; None without usable labels.

        ``embed(split, positions)`` returns the embeddings of those sentences of that split.
        """
        from .quality.metrics import probe_fit

        tr, va = self.probe_set("train"), self.probe_set("validation")
        if not self.recipe.bench.probe or len(tr.idx) < 20 or len(va.idx) < 5 or len(set(tr.labels.tolist())) < 2:
            return None
        pick = np.sort(np.random.default_rng(0).permutation(len(tr.idx))[: limit or len(tr.idx)])
        return probe_fit(embed("train", tr.idx[pick]), tr.labels[pick], embed("validation", va.idx), va.labels)

    def embed_with(self, model, tokenizer, desc: str):
        """An ``embed(split, positions)`` for :meth:`fit_probe` running a PyTorch encoder."""
        from .models.encode import embed_torch

        t = self.recipe.teacher

        def embed(split: str, positions) -> np.ndarray:
            texts = self.texts(split)
            return embed_torch(model, tokenizer, [texts[i] for i in positions], t.max_length, t.pooling,
                               t.normalize, desc=f"{desc} ({split})")

        return embed

    def teacher_embeddings(self, split: str) -> np.ndarray:
        # Memoised: each lookup hashes every text of the split to find its cache entry.
        if split not in self._teacher_emb:
            self._teacher_emb[split] = np.asarray(
                self.teacher_outputs(self.texts(split), desc=f"teacher embeddings ({split})").embeddings)
        return self._teacher_emb[split]


def set_threads(n: int = 0) -> int:
    import torch

    n = n or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n
