"""An output head that is exact for frequent tokens and low-rank for the rest (a "tail head").

A small decoder's 49,152 x 576 output matrix is a fixed per-token cost (~35% of a 15-layer student's decode
work). Trimming the vocabulary removes rare tokens from the model, so rare words must be spelt in pieces and
perplexity per word suffers (+15% for the teacher at min_count 3, +60% at 10: docs/llm.md). A tail head keeps
every token but splits the matrix: the rows of tokens the training text uses often are kept as they are, the
other rows are factorised through a rank-``r`` bottleneck (``up(down(h))``, with a per-token bias), and the two
score blocks are put back in vocabulary order. The program's contract (logits over the full vocabulary, the
same tokenizer) does not change; a decode step multiplies ``kept x hidden + rest x r + r x hidden`` weights
instead of ``vocab x hidden``.

The factorisation starts from the rank-``r`` SVD of the tail rows weighted by the covariance of the hidden
states they are applied to (what minimises the tail logits' squared error on that data; the plain SVD of the
rows ignores which directions the model uses and cost SmolLM2 2-3.5x the perplexity loss: benchmarks/llm_tail_head.py),
then is fitted by KL to the full head on the same hidden states (:func:`heal`).
"""

from __future__ import annotations

import math

import torch

from ..progress import progress


def rest_mask(vocab: int, kept) -> torch.Tensor:
    """True for the token ids that go through the low-rank tail (every id not in ``kept``)."""
    rest = torch.ones(vocab, dtype=torch.bool)
    rest[torch.as_tensor(list(kept), dtype=torch.long)] = False
    return rest


class TailHead(torch.nn.Module):
    """``logits = [kept rows . h, up(down(h))]`` in vocabulary order; ``kept``: the token ids scored exactly."""

    def __init__(self, weight: torch.Tensor, kept, down: torch.Tensor, up: torch.Tensor,
                 up_bias: torch.Tensor | None = None):
        super().__init__()
        vocab, hidden = weight.shape
        kept = torch.as_tensor(sorted({int(i) for i in kept}), dtype=torch.long)
        rest = rest_mask(vocab, kept)
        rank = down.shape[0]
        self.kept = torch.nn.Linear(hidden, len(kept), bias=False)
        self.down = torch.nn.Linear(hidden, rank, bias=False)
        self.up = torch.nn.Linear(rank, int(rest.sum()), bias=True)
        with torch.no_grad():
            self.kept.weight.copy_(weight[kept].float())
            self.down.weight.copy_(down.float())
            self.up.weight.copy_(up.float())
            self.up.bias.copy_(up_bias if up_bias is not None else torch.zeros(self.up.out_features))
        # scores come out kept-then-rest; inv puts them back in vocabulary order with one gather
        self.register_buffer("inv", torch.argsort(torch.cat([kept, rest.nonzero()[:, 0]])), persistent=True)

    @property
    def vocab_size(self) -> int:
        return self.inv.numel()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.kept(h), self.up(self.down(h))], -1).index_select(-1, self.inv)

    def multiply_adds(self) -> int:
        """Per token: what the three matrices cost (the full head costs vocab x hidden)."""
        return self.kept.weight.numel() + self.down.weight.numel() + self.up.weight.numel()


def hidden_covariance(hidden: torch.Tensor) -> torch.Tensor:
    h = hidden.reshape(-1, hidden.shape[-1]).double()
    return h.T @ h / max(len(h), 1)


def factorise(weight: torch.Tensor, kept, rank: int, cov: torch.Tensor | None = None) -> TailHead:
    """A :class:`TailHead` whose tail is the rank-``rank`` SVD of the non-kept rows of ``weight``, weighted by
    the hidden-state covariance ``cov`` (plain SVD without it). For 8da4w export ``rank`` must be a multiple of
    the int4 group size (32): it is the input width of ``up``."""
    w = weight.detach().double()
    rest = rest_mask(w.shape[0], kept)
    if cov is None:
        half = inv_half = torch.eye(w.shape[1], dtype=torch.float64)
    else:
        ev, q = torch.linalg.eigh(cov.double())
        ev = ev.clamp_min(ev.max() * 1e-10)
        half, inv_half = (q * ev.sqrt()) @ q.T, (q / ev.sqrt()) @ q.T
    u, s, vt = torch.linalg.svd(w[rest] @ half, full_matrices=False)
    rank = min(rank, len(s))
    return TailHead(weight, kept, vt[:rank] @ inv_half, u[:, :rank] * s[:rank])


def heal(head: TailHead, hidden: torch.Tensor, weight: torch.Tensor, steps: int = 400, batch: int = 512,
         lr: float = 1e-3, seed: int = 0, train_kept: bool = False) -> list[float]:
    """Fit the tail (``down``, ``up``, its bias) by KL(full head || tail head) on ``hidden`` (rows of final,
    normed hidden states), cosine learning rate. The kept rows stay the full head's unless ``train_kept``
    (then they are fitted too, at a tenth of the learning rate: they start exact and need only to make
    room for the tail's errors); their ``requires_grad`` is as before afterwards. Returns the loss every step."""
    h_all = hidden.reshape(-1, hidden.shape[-1]).float()
    full = weight.detach().float()
    groups = [{"params": [head.down.weight, head.up.weight, head.up.bias], "base": lr}]
    if train_kept:
        groups.append({"params": [head.kept.weight], "base": lr / 10})
    was = head.kept.weight.requires_grad
    head.kept.weight.requires_grad_(train_kept)
    try:
        return _fit(head, h_all, full, groups, steps, batch, seed)
    finally:
        head.kept.weight.requires_grad_(was)


def _fit(head: TailHead, h_all: torch.Tensor, full: torch.Tensor, groups: list[dict], steps: int, batch: int,
         seed: int) -> list[float]:
    opt = torch.optim.Adam([{**g, "lr": g["base"]} for g in groups])
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for s in progress(range(steps), desc="tail head fit", unit="step"):
        h = h_all[torch.randint(0, len(h_all), (batch,), generator=gen)]
        with torch.no_grad():
            target = torch.log_softmax(h @ full.T, -1)
        loss = torch.nn.functional.kl_div(torch.log_softmax(head(h), -1), target, log_target=True,
                                          reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
        for g in opt.param_groups:
            g["lr"] = g["base"] * 0.5 * (1 + math.cos(math.pi * (s + 1) / steps))
        losses.append(loss.item())
    return losses
