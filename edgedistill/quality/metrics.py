"""Embedding quality: agreement with the teacher and a downstream linear probe.

* mean cosine between student and teacher embeddings of the same sentences
  (only meaningful when both live in the same space, i.e. same width);
* Spearman correlation between the two models' pairwise-similarity matrices
  (does the student rank sentence pairs like the teacher?);
* a logistic-regression probe on frozen embeddings, C chosen on validation,
  accuracy on test with its standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_CS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(_unit(a) * _unit(b), axis=1)))


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(_unit(a) * _unit(b), axis=1)))


def pairwise_spearman(a: np.ndarray, b: np.ndarray, limit: int = 1000, seed: int = 0) -> float:
    from scipy.stats import spearmanr

    n = a.shape[0]
    if n > limit:
        idx = np.random.default_rng(seed).choice(n, size=limit, replace=False)
        a, b = a[idx], b[idx]
    iu = np.triu_indices(a.shape[0], k=1)
    sa = (_unit(a) @ _unit(a).T)[iu]
    sb = (_unit(b) @ _unit(b).T)[iu]
    return float(spearmanr(sa, sb).statistic)


def accuracy_se(acc: float, n: int) -> float:
    return math.sqrt(max(acc * (1 - acc), 0.0) / max(n, 1))


def paired_difference_se(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Standard error of acc(a) - acc(b) on the same test sentences."""
    d = correct_a.astype(np.float64) - correct_b.astype(np.float64)
    return float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")


@dataclass
class Probe:
    clf: object
    C: float
    val_accuracy: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.clf.predict(x)

    def correct(self, x: np.ndarray, y) -> np.ndarray:
        return self.predict(x) == np.asarray(y)

    def accuracy(self, x: np.ndarray, y) -> float:
        return float(np.mean(self.correct(x, y)))


def probe_fit(x_train, y_train, x_val, y_val, cs=DEFAULT_CS, seed: int = 0) -> Probe:
    from sklearn.linear_model import LogisticRegression

    best: Probe | None = None
    for c in cs:
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        clf.fit(x_train, y_train)
        acc = float(np.mean(clf.predict(x_val) == np.asarray(y_val)))
        if best is None or acc > best.val_accuracy:
            best = Probe(clf=clf, C=c, val_accuracy=acc)
    assert best is not None
    return best
