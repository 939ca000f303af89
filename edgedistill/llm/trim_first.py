"""``output_vocab = "trim"`` with ``output_vocab_when = "before"``: distil inside the kept vocabulary.

Trimming a trained student (:mod:`.trim_student`) costs prose perplexity (+17-20% per full-vocabulary token
at ``min_count = 3``): the student never saw a rare word spelt in the kept pieces it must now use. Trimming
first removes that mismatch: the teacher's body and embedding are trimmed to the kept ids
(:func:`.output_vocab.trim_causal_lm`), text, chat examples and the student (pruned from that teacher) live
in the trimmed tokenisation from the first step, and every top-k target is taken over kept tokens only.

The targets come from the teacher's full output layer (:class:`FirstPieceHead`): a dropped token's
probability goes to the kept token its trimmed spelling starts with, which is where the student must put
it (renormalising the kept rows alone would spread it over every kept token). The approximation left:
inside a split rare word the teacher reads pieces, a spelling it was not trained on. Measured on
SmolLM2-135M at ``min_count = 3`` (32 Brown test blocks, per full-vocabulary token): teacher 54.1, trimmed
with renormalised rows 64.4, with first-piece targets 62.0, so trimming costs even the teacher ~15%, most of
it on the pieces of rare words; a 200-step student lost 13.1% trimmed first against 17.4% trimmed after
(docs/llm.md, "Trimming before distillation").

What it costs is measured on the same held-out text as the untrimmed teacher: the full tokenizer's test
blocks decoded to text, re-encoded by the trimmed tokenizer, the student's summed NLL divided by the full
tokenizer's token count (``test_ppl_trimmed``, per full-vocabulary token, as :mod:`.trim_student` reports
it), so it compares directly with the teacher's and an untrimmed student's held-out perplexity.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch

from ..fileutil import sha256_json
from ..progress import say
from . import output_vocab
from .blocks import tokenizer_hash
from .evaluate import eval_subset, evaluate_lm
from .topk_cache import build_topk_cache
from .trim_student import (
    full_tokenizer_json,
    held_out_text,
    kept_tokenisation,
    per_full_token,
    retokenize,
    small_tokenizer,
)


@dataclass
class TrimFirst:
    """What the distill stage needs after training a student inside the kept vocabulary."""
    plan: output_vocab.OutputVocab
    small_json: dict
    full_tok: object
    """The teacher's own tokenizer: the student folder is saved from it, then given the trimmed tokenizer.json."""
    held_out: dict
    """The held-out text the cost is measured on (:func:`.trim_student.kept_tokenisation`)."""
    teacher_test_ppl: float
    """The untrimmed teacher's held-out perplexity (per full-vocabulary token)."""
    teacher_test_ppl_trimmed: float
    """The trimmed teacher's, on the same text and per full-vocabulary token: what its targets lost."""


class FirstPieceHead(torch.nn.Module):
    """The full output layer, its probabilities summed onto kept tokens: kept token ``j`` gets its own
    probability plus that of every dropped token whose trimmed spelling starts with ``j``. Returns logits
    over the kept ids whose softmax is that distribution (each is the log-sum-exp of its group)."""

    per_position = True
    """Each position's logits depend on its hidden state alone: the top-k cache may build them in chunks."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, first_piece: torch.Tensor, kept: int):
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.register_buffer("first_piece", first_piece)
        self.kept = kept

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = torch.nn.functional.linear(hidden, self.weight, self.bias).float()
        top = logits.amax(-1, keepdim=True)
        sums = logits.new_zeros(*logits.shape[:-1], self.kept).index_add_(-1, self.first_piece, (logits - top).exp())
        return sums.log() + top


def first_pieces(full_json: dict, small, new_to_old: list[int], rows: int) -> torch.Tensor:
    """For every full-vocabulary id (``rows`` of the output layer): the kept id its trimmed spelling starts
    with (a kept token: itself). The byte-level strings go through the trimmed BPE model alone, exactly as
    a pre-tokenised word does; an id with no string (padding rows) maps to kept id 0."""
    where = {old: new for new, old in enumerate(new_to_old)}
    names = {i: t for t, i in full_json["model"]["vocab"].items()}
    bpe = small.backend_tokenizer.model
    out = torch.zeros(rows, dtype=torch.long)
    for i in range(rows):
        if i in where:
            out[i] = where[i]
        elif i in names:
            out[i] = bpe.tokenize(names[i])[0].id
    return out


def targets_model(teacher, head: FirstPieceHead):
    """``teacher`` (already trimmed) sharing its body, with ``head`` as its output layer."""
    out = copy.copy(teacher)
    out._modules = dict(teacher._modules)  # a new module table: the trimmed teacher keeps its own head
    out.lm_head = head
    return out


def trimmed_teacher_sha(teacher_sha: str, new_to_old: list[int], head: str) -> str:
    """Cache identity of a trimmed teacher: its weights, the kept ids and its output layer (``rows``: the
    kept rows, renormalised; ``first-piece``: :class:`FirstPieceHead`)."""
    return sha256_json({"teacher": teacher_sha, "kept": sha256_json(new_to_old), "head": head})


def trim_chat_set(chat_set, tok, small, where: dict[int, int]):
    """The chat set in the trimmed tokenisation: the full teacher's answers as text, tokenised again."""
    stops = [where[s] for s in chat_set.stops if s in where]
    return replace(chat_set, train=retokenize(chat_set.train, tok, small),
                   held_out=retokenize(chat_set.held_out, tok, small), stops=stops,
                   pad_id=where.get(chat_set.pad_id, stops[0]))


def trim_context(ctx, recipe, chat_set=None):
    """``ctx`` (a full-vocabulary :class:`.stage.LLMContext`) with teacher, tokenizer, blocks, held-out
    targets and chat set in the kept vocabulary. Counts come from every train block of the recipe's text
    and the chat examples trained on, as when trimming after training. The teacher is trimmed in place."""
    from .stage import load_blocks

    s, d = recipe.student, recipe.data
    tok = ctx.tok
    full_json = full_tokenizer_json(tok)
    arrays = [load_blocks(recipe, tok)["train"], *(e.prompt + e.answer for e in (chat_set.train if chat_set else ()))]
    counts = output_vocab.count_ids(arrays, len(full_json["model"]["vocab"]))
    ov = output_vocab.plan(full_json, counts, s.output_vocab_min_count, s.output_vocab_max_size)
    small_json = output_vocab.trimmed_tokenizer_json(full_json, ov.new_to_old)
    small = small_tokenizer(tok, small_json)
    small.chat_template = getattr(tok, "chat_template", None)  # chat prompts are wrapped exactly as before
    full = ctx.teacher.get_output_embeddings()  # copied by the head before trimming gathers its rows
    pieces = first_pieces(full_json, small, ov.new_to_old, full.weight.shape[0]).to(full.weight.device)
    head = FirstPieceHead(full.weight, full.bias, pieces, len(ov.new_to_old))
    teacher = output_vocab.trim_causal_lm(ctx.teacher, ov.new_to_old)
    targets = targets_model(teacher, head)
    sha = trimmed_teacher_sha(ctx.ref.sha256, ov.new_to_old, "first-piece")
    blocks = load_blocks(recipe, small)
    train = blocks["train"] if d.max_train_blocks is None else blocks["train"][: d.max_train_blocks]
    val, test = eval_subset(blocks["validation"], d.val_blocks), eval_subset(blocks["test"], d.test_blocks)
    k, tsha = recipe.distill.top_k, tokenizer_hash(small)
    val_top1 = build_topk_cache(targets, val, teacher_sha=sha, tokenizer_sha=tsha, k=k).idx[:, :, 0]
    test_top1 = build_topk_cache(targets, test, teacher_sha=sha, tokenizer_sha=tsha, k=k).idx[:, :, 0]
    teacher_test = evaluate_lm(targets, test, desc="trimmed teacher test")
    text = kept_tokenisation(*held_out_text(tok, ctx.test), small, ov.new_to_old)
    teacher_trimmed = per_full_token(targets, text)
    cap = "" if ov.max_size is None else f", at most {ov.max_size:,}"
    say(f"output vocabulary (trimmed before distillation): {len(ov.new_to_old):,} of {ov.full_size:,} tokens kept "
        f"(min count {ov.min_count}{cap}); {len(train)} train blocks in the kept tokenisation; teacher held-out ppl "
        f"per full-vocabulary token {ctx.teacher_test.ppl:.2f} -> {teacher_trimmed:.2f} trimmed")
    trim = TrimFirst(ov, small_json, tok, text, ctx.teacher_test.ppl, teacher_trimmed)
    chat = None if chat_set is None else trim_chat_set(chat_set, tok, small, ov.old_to_new)
    return replace(ctx, teacher=teacher, targets=targets, tok=small, train=train, val=val, test=test,
                   val_top1=val_top1, test_top1=test_top1, teacher_test=teacher_test,
                   teacher_sha=trimmed_teacher_sha(ctx.ref.sha256, ov.new_to_old, "rows"), targets_sha=sha, chat=chat,
                   trim=trim)


def held_out_cost(student, trim: TrimFirst) -> dict:
    """The ``output_vocab`` report of a student distilled in the kept vocabulary (see the module doc)."""
    ov, text = trim.plan, trim.held_out
    return {
        "when": "before", "kept": len(ov.new_to_old), "full_size": ov.full_size, "min_count": ov.min_count,
        "max_size": ov.max_size, "counted_tokens": ov.counted_tokens,
        "held_out_coverage": round(text["coverage"], 5),
        "tokens_per_full_token": round(text["tokens_per_full_token"], 5),
        "test_ppl_trimmed": round(per_full_token(student.cpu(), text), 3),
        "teacher_test_ppl_full": round(trim.teacher_test_ppl, 3),
        "teacher_test_ppl_trimmed": round(trim.teacher_test_ppl_trimmed, 3),
        "ppl_note": "per full-vocabulary token of the same held-out text (see edgedistill/llm/trim_first.py)",
    }
