"""Token-level text augmentation on already tokenised rows, for augmentation-based distillation.

Three edits, each applied to an exact share of a row's ordinary tokens (special tokens such as
[CLS]/[SEP] and padding are never touched), so a recipe's probabilities are the fractions a user
gets rather than expectations:

- ``mask``: back-off, the token becomes the mask token ([MASK], or [UNK] when there is none);
- ``drop``: the token is removed (the row gets shorter);
- ``swap``: neighbouring ordinary tokens trade places (round(p x n / 2) pairs, so p x n tokens move).

The positions are drawn from a numpy ``Generator``, so a seed fixes every augmented batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class AugmentSpec:
    drop: float = 0.0
    swap: float = 0.0
    mask: float = 0.0
    mask_id: int = 0
    special_ids: frozenset[int] = frozenset()

    @classmethod
    def from_recipe(cls, spec, tokenizer) -> AugmentSpec:
        mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
        return cls(drop=spec.augment_drop, swap=spec.augment_swap, mask=spec.augment_mask, mask_id=int(mask_id or 0),
                   special_ids=frozenset(tokenizer.all_special_ids))


def _count(p: float, n: float) -> int:
    return int(round(p * n))


def augment_row(ids: list[int], aug: AugmentSpec, rng: np.random.Generator) -> list[int]:
    """One row's ids with round(p x n) of its n ordinary tokens masked, dropped or swapped (disjoint picks)."""
    ordinary = [i for i, t in enumerate(ids) if t not in aug.special_ids]
    n = len(ordinary)
    k_mask, k_drop = _count(aug.mask, n), _count(aug.drop, n)
    k_swap = _count(aug.swap, n / 2)  # pairs: each moves two tokens
    if n == 0 or k_mask + k_drop + k_swap == 0:
        return list(ids)
    k_drop = min(k_drop, n - 1)  # keep at least one ordinary token
    picks = [ordinary[j] for j in rng.permutation(n)]
    masked = set(picks[:k_mask])
    dropped = set(picks[k_mask : k_mask + k_drop])
    out = list(ids)
    for pos in masked:
        out[pos] = aug.mask_id
    # Swap pairs of neighbouring ordinary tokens among those not yet edited.
    free = [p for p in ordinary if p not in masked and p not in dropped]
    used: set[int] = set()
    swapped = 0
    for j in rng.permutation(max(len(free) - 1, 0)):
        if swapped == k_swap:
            break
        a, b = free[j], free[j + 1]
        if a in used or b in used:
            continue
        out[a], out[b] = out[b], out[a]
        used |= {a, b}
        swapped += 1
    return [t for pos, t in enumerate(out) if pos not in dropped]


def augment_features(feats: dict, aug: AugmentSpec, rng: np.random.Generator, pad_id: int) -> dict:
    """A padded batch (input_ids, attention_mask[, token_type_ids]) with every row augmented and re-padded."""
    ids, mask = feats["input_ids"], feats["attention_mask"]
    rows = [augment_row(ids[r, : int(mask[r].sum())].tolist(), aug, rng) for r in range(ids.shape[0])]
    width = max(len(r) for r in rows)
    out_ids = torch.full((len(rows), width), pad_id, dtype=ids.dtype)
    out_mask = torch.zeros((len(rows), width), dtype=mask.dtype)
    for r, row in enumerate(rows):
        out_ids[r, : len(row)] = torch.tensor(row, dtype=ids.dtype)
        out_mask[r, : len(row)] = 1
    # built on the CPU row by row, then moved once to where the batch came from
    out = {"input_ids": out_ids.to(ids.device), "attention_mask": out_mask.to(mask.device)}
    if "token_type_ids" in feats:
        out["token_type_ids"] = torch.zeros_like(out["input_ids"])
    return out
