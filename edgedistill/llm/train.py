"""Training loop for a causal student: token KD on cached teacher top-k, or hard next-token labels.

``mode="kd"``: loss = KD(teacher top-k, student) + ``ce_weight`` * CE;
``mode="nokd"``: loss = CE on the next token only (the baseline KD must beat);
``mode="on_policy"``: a share ``on_policy_fraction`` of each batch is student-sampled
continuations of prompts scored online by the teacher (:mod:`.on_policy`), the
rest is ``kd`` on cached real-text targets; ``mode="seq_kd"`` is resolved by the
stage into ``nokd``/``kd`` on teacher-generated text (:mod:`.seq_kd`).
Both share everything else, so a comparison at the same budget is fair:
AdamW, linear warm-up then cosine decay to 10 %, gradient clipping, the tied
embedding / output matrix frozen by default (on CPU its 28 M-parameter
gradient and Adam state cost more than they buy), validation perplexity and
top-1 agreement with the teacher every ``eval_every`` steps, the best
checkpoint kept, and a stop with a clear error on NaN/inf.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from ..distill.device import runtime
from ..errors import TrainingError
from .evaluate import evaluate_lm
from .losses import TAILS, TOKEN_LOSSES, chunked_token_loss
from .on_policy import on_policy_loss, sample_continuation
from .qat import output_weight
from .topk_cache import head_topk

MODES = ("kd", "nokd", "on_policy", "seq_kd")


@dataclass
class TrainConfig:
    mode: str = "kd"
    loss: str = "forward_kl"
    temperature: float = 1.0
    tail: str = "bucket"
    beta: float = 0.5
    """Only for ``loss = "jsd"``."""
    ce_weight: float = 0.0
    """Hard-label term added to the KD loss in ``kd`` mode."""
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    max_steps: int = 100
    time_budget_s: float | None = None
    """Stop early (after the current step) once training has used this many seconds."""
    batch_size: int = 4
    eval_every: int = 25
    grad_clip: float = 1.0
    freeze_embeddings: bool = True
    chunk: int = 0
    """Positions per chunk of the loss's full-vocabulary logits; 0 = auto (512 on a CPU, 8192 on a GPU)."""
    gradient_checkpointing: bool = False
    seed: int = 0
    on_policy_fraction: float = 0.5
    """``on_policy`` mode: share of each batch that is student-generated (GKD's lambda)."""
    gen_tokens: int = 32
    """Tokens per generated continuation (``on_policy`` and ``seq_kd``)."""
    prompt_tokens: int = 32
    """Real-text prefix length of a text prompt (``on_policy`` and ``seq_kd``)."""
    gen_temperature: float = 1.0
    """Sampling temperature for generated continuations (0 = greedy)."""
    hidden_weight: float = 0.0
    """Hidden-state transfer: weight of the distance between each student block's output and the output of the
    teacher block it was copied from (the live teacher runs every step; ``kd``/``nokd`` modes)."""
    hidden_loss: str = "relative"
    """That distance: ``relative`` (per token, squared error over the teacher state's squared norm) or ``mse``."""
    device: str = "auto"
    """Where training, the teacher's top-k pass and generation run: auto (the GPU when present), cpu, cuda, cuda:N."""
    precision: str = "fp32"
    """fp32, bf16 autocast, or fp16 autocast with a gradient scaler (GPU only)."""
    qat: str = "none"
    """Quantization-aware distillation: ``8da4w`` trains through torchao's fake quantization of the et-8da4w
    export (:mod:`edgedistill.llm.qat`); ``none`` quantizes after training."""

    def validate(self, where: str = "[distill]") -> None:
        from ..errors import RecipeError

        if self.mode not in MODES:
            raise RecipeError(f"{where} key 'mode': expected one of {MODES}, got {self.mode!r}")
        from ..distill.device import check_device_spec, check_precision_spec

        check_device_spec(self.device, where)
        check_precision_spec(self.precision, where)
        from ..distill.qat_schemes import get_qat

        get_qat(self.qat, "causal-lm", where)
        if self.mode != "nokd":
            TOKEN_LOSSES.lookup(self.loss)
        if not 0.0 <= self.on_policy_fraction <= 1.0:
            raise RecipeError(f"{where} key 'on_policy_fraction': expected 0..1, got {self.on_policy_fraction}")
        if not 1 <= self.gen_tokens <= 4096 or not 1 <= self.prompt_tokens <= 4096:
            raise RecipeError(f"{where} keys 'gen_tokens'/'prompt_tokens': expected 1..4096, "
                              f"got {self.gen_tokens}/{self.prompt_tokens}")
        if self.gen_temperature < 0:
            raise RecipeError(f"{where} key 'gen_temperature': expected >= 0, got {self.gen_temperature}")
        if self.tail not in TAILS:
            raise RecipeError(f"{where} key 'tail': expected one of {TAILS}, got {self.tail!r}")
        if self.temperature <= 0:
            raise RecipeError(f"{where} key 'temperature': expected > 0, got {self.temperature}")
        if self.hidden_weight < 0:
            raise RecipeError(f"{where} key 'hidden_weight': expected >= 0, got {self.hidden_weight}")
        if self.hidden_loss not in HIDDEN_LOSSES:
            raise RecipeError(f"{where} key 'hidden_loss': expected one of {list(HIDDEN_LOSSES)}, "
                              f"got {self.hidden_loss!r}")
        if self.hidden_weight > 0 and self.mode not in ("kd", "nokd"):
            raise RecipeError(f"{where} key 'hidden_weight': hidden-state transfer runs with mode 'kd' or 'nokd', "
                              f"not {self.mode!r}")
        if self.max_steps < 1 or self.batch_size < 1:
            raise RecipeError(f"{where} keys 'max_steps'/'batch_size': expected >= 1")
        if self.chunk < 0:
            raise RecipeError(f"{where} key 'chunk': expected 0 (auto) or a positive number of positions, "
                              f"got {self.chunk}")


@dataclass
class TrainResult:
    best_step: int
    best_val: dict
    steps: int
    train_tokens: int
    train_seconds: float
    tokens_per_s: float
    history: list[dict] = field(default_factory=list)
    stopped: str = "max_steps"

    def as_dict(self) -> dict:
        return asdict(self)


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def hidden_block_map(copied_from: list[int]) -> dict[int, int]:
    """Student block -> the teacher block it was copied from, for every block but the last.

    The last block's HF hidden state is after the final norm in the student but a raw mid-stack output in the
    teacher, so it has no counterpart."""
    return dict(list(enumerate(copied_from))[:-1])


def _relative_sq(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return ((s - t).pow(2).sum(-1) / t.pow(2).sum(-1).clamp_min(1e-6)).mean()


def _mse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (s - t).pow(2).mean()


# Llama-style residual streams carry "massive activations" on a few tokens (SmolLM2, from block 11 on: a block's
# first position has ~30,000x the squared norm of the others), so a plain MSE is mostly those tokens and the
# last blocks; the relative form weighs every token and block alike.
HIDDEN_LOSSES = {"relative": _relative_sq, "mse": _mse}


def hidden_transfer(s_states, t_states, hidden_map: dict[int, int], kind: str = "relative") -> torch.Tensor:
    """Mean over mapped blocks of the ``kind`` distance between student block i's and teacher block j's output.

    ``*_states`` are HF ``hidden_states`` tuples (index 0 = embeddings, i + 1 = block i)."""
    dist = HIDDEN_LOSSES[kind]
    terms = [dist(s_states[i + 1].float(), t_states[j + 1].float()) for i, j in hidden_map.items()]
    return torch.stack(terms).mean()


def _step_loss(student, ids: torch.Tensor, logp, idx, cfg: TrainConfig, teacher=None,
               hidden_map: dict[int, int] | None = None, top_k: int = 32) -> tuple[torch.Tensor, dict]:
    want_states = cfg.hidden_weight > 0
    out = student.model(input_ids=ids, use_cache=False, output_hidden_states=want_states)
    hidden = out.last_hidden_state
    feat = None
    if want_states:
        with torch.no_grad():
            t_out = teacher.model(input_ids=ids, use_cache=False, output_hidden_states=True)
            if logp is None and cfg.mode == "kd":  # no cache: the same teacher pass gives the KD targets
                logp, idx = head_topk(teacher.lm_head, t_out.last_hidden_state, top_k, cfg.chunk)
        feat = hidden_transfer(out.hidden_states, t_out.hidden_states, hidden_map, cfg.hidden_loss)
    hidden, head = output_weight(student, hidden)  # the lm_head's fake quantization under QAT
    b, t, h = hidden.shape
    labels = torch.full((b, t), -100, dtype=torch.long, device=ids.device)
    labels[:, :-1] = ids[:, 1:]
    want_ce = cfg.mode == "nokd" or cfg.ce_weight > 0
    parts = chunked_token_loss(
        hidden.reshape(b * t, h), head,
        labels=labels.reshape(-1) if want_ce else None,
        t_logp=None if cfg.mode == "nokd" else logp.reshape(b * t, -1),
        t_idx=None if cfg.mode == "nokd" else idx.reshape(b * t, -1),
        loss=cfg.loss, temperature=cfg.temperature, tail=cfg.tail, chunk=cfg.chunk,
        **({"beta": cfg.beta} if cfg.loss == "jsd" else {}))
    if cfg.mode == "nokd":
        loss, info = parts.ce, {"ce": parts.ce.item()}
    else:
        loss = parts.kd + (cfg.ce_weight * parts.ce if want_ce else 0.0)
        info = {"kd": parts.kd.item()}
        if want_ce:
            info["ce"] = parts.ce.item()
    if feat is not None:
        loss = loss + cfg.hidden_weight * feat
        info["hidden"] = feat.item()
    return loss, info


class _Counters:
    """What an LLM checkpoint carries beyond the weights (the loop's ``strategy_state``): the tokens trained
    on so far and the RNG that samples on-policy continuations, so a resumed run samples what it would have."""

    def __init__(self, gen: torch.Generator):
        self.tokens, self.step_tokens, self.gen = 0, 0, gen

    def checkpoint_state(self) -> dict:
        return {"tokens": torch.tensor([self.tokens], dtype=torch.int64), "sample_rng": self.gen.get_state()}

    def load_checkpoint_state(self, d: dict) -> None:
        self.tokens = int(d["tokens"][0])
        self.gen.set_state(d["sample_rng"])


def _optimizer(cfg: TrainConfig):
    """AdamW (betas 0.9/0.95) over the trainable weights, linear warm-up then cosine decay to 10 %."""

    def make(student, extra_params, spec):
        params = [p for p in student.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_at(s, cfg) / cfg.learning_rate)
        return params, opt, sched

    return make


def _stream(n_blocks: int, n_real: int, n_gen: int, n_prompts: int, n_chat: int = 0, n_examples: int = 0):
    """The batch order for :func:`.loop.train_loop`: each step's rows are ``n_real`` train blocks (>= 0),
    ``n_chat`` chat examples encoded as ``n_blocks + example`` and ``n_gen`` prompts encoded as ``-1 - prompt``,
    all drawn from the loop's seeded Generator, so that replaying the stream on resume also replays which
    prompts each step continued."""

    def make(rng: np.random.Generator):
        order, pos = rng.permutation(n_blocks), 0
        chat_order, chat_pos = (rng.permutation(n_examples), 0) if n_chat else (None, 0)
        while True:
            if pos + n_real > len(order):
                order, pos = rng.permutation(n_blocks), 0
            sel = np.sort(order[pos : pos + n_real])
            pos += n_real
            chat = np.zeros(0, dtype=np.int64)
            if n_chat:  # every chat example once per pass, like the blocks
                if chat_pos + n_chat > len(chat_order):
                    chat_order, chat_pos = rng.permutation(n_examples), 0
                chat = n_blocks + chat_order[chat_pos : chat_pos + n_chat].astype(np.int64)
                chat_pos += n_chat
            picks = rng.integers(0, n_prompts, n_gen) if n_gen else np.zeros(0, dtype=np.int64)
            yield np.concatenate([sel.astype(np.int64), chat, -1 - picks.astype(np.int64)])

    return make


def chat_rows(cfg: TrainConfig, chat) -> int:
    """Rows of each batch that are chat examples (``chat``: a :class:`.chat_data.ChatMix` or None)."""
    if chat is None or chat.ratio <= 0:
        return 0
    return max(1, round(chat.ratio * cfg.batch_size))


def train_causal(student, train_blocks: np.ndarray, val_blocks: np.ndarray, cfg: TrainConfig,
                 topk=None, val_teacher_top1: np.ndarray | None = None, teacher=None,
                 prompts: list[list[int]] | None = None, top_k: int = 32,
                 hidden_map: dict[int, int] | None = None, log_path=None, store=None,
                 chat=None) -> tuple[object, TrainResult]:
    """Train ``student`` in place; returns (best student, result). ``topk`` is the train split's TopK.

    ``on_policy`` mode also needs the live ``teacher`` (scoring top ``top_k``) and ``prompts`` (token ids);
    ``hidden_weight`` > 0 needs the live ``teacher`` and ``hidden_map`` (student block -> teacher block).
    Training runs on ``cfg.device`` (the live teacher goes there too); the student comes back on the CPU.
    ``log_path``: one JSON line per step (loss terms, seconds, tokens, peak GPU memory on a GPU).
    ``store``: a :class:`edgedistill.distill.checkpoint.GenerationStore` to checkpoint into and resume from.
    ``chat``: a :class:`.chat_data.ChatMix`: a share ``chat.ratio`` of each batch is prompt + teacher answer
    sequences trained with cross-entropy on the answer tokens only (sequence-level KD).
    The loop itself (NaN stop, best weights, checkpoints, progress) is :func:`edgedistill.distill.loop.train_loop`.
    """
    from ..distill.loop import Metric, train_loop
    from ..distill.qat_schemes import get_qat

    cfg.validate()
    rt = runtime(cfg)
    cfg = replace(cfg, chunk=cfg.chunk or rt.loss_chunk)
    if cfg.hidden_weight > 0 and (teacher is None or not hidden_map):
        raise TrainingError("hidden_weight > 0 needs the live teacher and a student->teacher block map")
    if cfg.mode == "seq_kd":
        raise TrainingError("mode 'seq_kd' trains on teacher-generated blocks: build them with "
                            "edgedistill.llm.seq_kd and train in mode 'nokd' or 'kd' on them")
    n_gen = round(cfg.on_policy_fraction * cfg.batch_size) if cfg.mode == "on_policy" else 0
    n_chat = chat_rows(cfg, chat)
    n_real = cfg.batch_size - n_gen - n_chat
    if n_real < 0:
        raise TrainingError(f"batch_size {cfg.batch_size} cannot hold {n_gen} generated and {n_chat} chat rows: "
                            "raise batch_size or lower on_policy_fraction / chat_ratio")
    if n_chat and not chat.examples:
        raise TrainingError("chat_ratio > 0 needs at least one chat example")
    if n_gen and (teacher is None or not prompts):
        raise TrainingError("mode 'on_policy' needs the teacher model and at least one prompt")
    if cfg.mode == "kd" or (cfg.mode == "on_policy" and n_real):
        if topk is None and not (cfg.mode == "kd" and cfg.hidden_weight > 0):
            raise TrainingError(f"mode {cfg.mode!r} needs the teacher's top-k targets for the train split")
        if topk is not None and topk.logp.shape[:2] != train_blocks.shape:
            raise TrainingError(f"teacher top-k cache covers {topk.logp.shape[:2]} positions, "
                                f"train blocks are {train_blocks.shape}: rebuild the cache")
        vocab = student.config.vocab_size
        # a live teacher's top-k may name any of its ids; a cache's largest id is known
        top_id = teacher.config.vocab_size - 1 if topk is None else int(np.asarray(topk.idx[:, :, 0]).max())
        if top_id >= vocab:
            raise TrainingError(f"teacher token ids exceed the student's vocabulary ({vocab}): KD needs a shared "
                                "tokenizer")
    counters = _Counters(torch.Generator().manual_seed(cfg.seed))
    if n_gen or cfg.hidden_weight > 0:
        teacher.to(rt.device)
        teacher.eval()
    if cfg.gradient_checkpointing:
        student.gradient_checkpointing_enable()
    qat = get_qat(cfg.qat, "causal-lm")
    qat.prepare_fn()(student)  # before the loop: checkpoints and best weights are of the prepared model
    for p in {student.get_input_embeddings().weight, student.lm_head.weight} if cfg.freeze_embeddings else ():
        p.requires_grad_(False)
    jsd = {"beta": cfg.beta} if cfg.loss == "jsd" else {}

    def batch_loss(rows: np.ndarray, frac: float):
        n_blocks = len(train_blocks)
        real, picks = rows[(rows >= 0) & (rows < n_blocks)], -1 - rows[rows < 0]
        chats = rows[rows >= n_blocks] - n_blocks
        loss, info = torch.zeros((), device=rt.device), {}
        counters.step_tokens = 0
        if len(real):
            ids = torch.from_numpy(train_blocks[real].astype(np.int64)).to(rt.device)
            logp = idx = None
            if cfg.mode != "nokd" and topk is not None:
                logp = torch.from_numpy(np.asarray(topk.logp[real])).to(rt.device)
                idx = torch.from_numpy(np.asarray(topk.idx[real])).to(rt.device)
            loss, info = _step_loss(student, ids, logp, idx, cfg, teacher, hidden_map, top_k)
            loss = loss * (len(real) / cfg.batch_size)
            counters.step_tokens += ids.numel()
        if len(chats):
            from .chat_data import answer_batch

            ids, labels = (torch.from_numpy(x).to(rt.device) for x in answer_batch(
                [chat.examples[j] for j in chats], chat.pad_id, chat.max_len))
            hidden = student.model(input_ids=ids, use_cache=False).last_hidden_state
            ce = chunked_token_loss(hidden.reshape(-1, hidden.shape[-1]), student.lm_head.weight,
                                    labels=labels.reshape(-1), chunk=cfg.chunk).ce
            loss = loss + ce * (len(chats) / cfg.batch_size)
            info["chat_ce"] = ce.item()
            counters.step_tokens += int((labels != -100).sum())
        if len(picks):
            gen_loss = 0.0
            for j in picks:
                seq = sample_continuation(student, prompts[j], cfg.gen_tokens, cfg.gen_temperature, counters.gen)
                gen_loss = gen_loss + on_policy_loss(
                    student, teacher, seq, len(prompts[j]), k=top_k, loss=cfg.loss, temperature=cfg.temperature,
                    tail=cfg.tail, chunk=cfg.chunk, **jsd)
                counters.step_tokens += len(seq)
            loss = loss + gen_loss / cfg.batch_size
            info["on_policy_kd"] = gen_loss.item() / len(picks)
        counters.tokens += counters.step_tokens
        return loss, info

    def validate():
        r = evaluate_lm(student, val_blocks, cfg.batch_size, val_teacher_top1, desc="validation")
        student.train()
        return r.as_dict()

    stream = _stream(len(train_blocks), n_real, n_gen, len(prompts or ()), n_chat, len(chat.examples) if n_chat else 0)
    res = train_loop(student, [], cfg, stream, batch_loss,
                     Metric("ppl", validate, higher_is_better=False, with_loss=True), strategy_state=counters,
                     desc=f"train ({cfg.mode})", store=store, log_path=log_path, optim=_optimizer(cfg),
                     step_fields=lambda: {"tokens": counters.step_tokens})
    qat.release_fn()(student)  # plain modules again; the export quantizes the trained weights the same way
    best = next(e for e in res.evals if e["step"] == res.best_step)
    return student, TrainResult(best_step=res.best_step, best_val=best, steps=res.steps, train_tokens=counters.tokens,
                                train_seconds=round(res.train_seconds, 2),
                                tokens_per_s=round(counters.tokens / res.train_seconds, 1), history=res.evals,
                                stopped=res.stopped)
