"""The LLM distill stage: teacher -> text blocks -> pruned student (or a shrinking chain) -> KD -> student folder.

Writes ``OUT/student/`` (HF folder + tokenizer + ``llm_distill.json`` with the
layer map, perplexities before and after, and training speed) atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..distill.checkpoint import Checkpoints
from ..distill.device import runtime
from ..errors import DataError, ModelError, RecipeError
from ..fileutil import atomic_dir, sha256_json, write_json_atomic
from ..progress import say
from ..schema import as_dict
from .blocks import cached_blocks, tokenizer_hash
from .brown import Document, brown_blocks, split_documents
from .chat_data import ChatMix, build_chat_set
from .chat_eval import evaluate_chat
from .evaluate import eval_subset, evaluate_lm
from .methods import Tutor, teach, topk_of
from .progressive import progressive_shrink
from .recipe import LLMRecipe
from .student import plan_student
from .teacher import load_causal_lm, resolve_llm_teacher
from .topk_cache import build_topk_cache
from .train import hidden_block_map


def check_shared_tokenizer(teacher_tok, student_tok) -> None:
    """Token-level KD compares distributions position by position: both sides must tokenise alike."""
    if tokenizer_hash(teacher_tok) != tokenizer_hash(student_tok):
        raise ModelError("teacher and student tokenizers differ; token-level KD needs a shared tokenizer "
                         "(build the student from the teacher, or use mode = \"nokd\")")


@dataclass
class LLMContext:
    """What every distillation run of one recipe shares: teacher, text splits, held-out targets."""
    teacher: object
    tok: object
    ref: object
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    val_top1: np.ndarray
    test_top1: np.ndarray
    teacher_test: object
    teacher_sha: str | None = None
    """Cache identity of ``teacher`` when it is not the file ``ref`` names (a teacher trimmed to the kept
    vocabulary); None: ``ref.sha256``."""
    targets_sha: str | None = None
    """Cache identity of ``targets``."""
    chat: object = None
    """The chat set, when it was built before training (trimming first counts its tokens); None: built by
    :func:`distill_llm` when the recipe wants chat."""
    trim: object = None
    """:class:`.trim_first.TrimFirst` when teacher, text and student live in a trimmed vocabulary."""
    targets: object = None
    """The model KD targets come from when it is not ``teacher`` (which students are built from): a trimmed
    teacher's first-piece output layer (:mod:`.trim_first`)."""

    @property
    def tutor(self) -> Tutor:
        if self.targets is not None:
            return Tutor(self.targets, self.targets_sha, self.tok, tokenizer_hash(self.tok))
        return Tutor(self.teacher, self.teacher_sha or self.ref.sha256, self.tok, tokenizer_hash(self.tok))


def prepare_llm(recipe: LLMRecipe) -> LLMContext:
    spec = recipe.teacher
    path = None if spec.path is None else recipe.resolve(spec.path)
    ref = resolve_llm_teacher(package=spec.package, path=path, sha256=spec.sha256)
    rt = runtime(recipe.distill)  # a recipe asking for a GPU the host lacks fails here, before any work
    if rt.is_cuda or recipe.distill.device != "auto":
        say(rt.describe())
    teacher, tok = load_causal_lm(ref.folder)
    teacher.to(rt.device)  # every teacher pass (top-k, importance, generation) runs where training does
    say(f"teacher: {ref.source} ({sum(p.numel() for p in teacher.parameters()) / 1e6:.1f} M params, "
        f"{teacher.config.num_hidden_layers} layers)")
    d = recipe.data
    blocks = load_blocks(recipe, tok)
    train = blocks["train"] if d.max_train_blocks is None else blocks["train"][: d.max_train_blocks]
    val = eval_subset(blocks["validation"], d.val_blocks)
    test = eval_subset(blocks["test"], d.test_blocks)
    say(f"text: {d.source}, {len(train)} train / {len(val)} validation / {len(test)} test blocks of {d.block_size} tokens")
    k = recipe.distill.top_k
    val_topk = build_topk_cache(teacher, val, teacher_sha=ref.sha256, tokenizer_sha=tokenizer_hash(tok), k=k)
    test_topk = build_topk_cache(teacher, test, teacher_sha=ref.sha256, tokenizer_sha=tokenizer_hash(tok), k=k)
    teacher_test = evaluate_lm(teacher, test, desc="teacher test")
    say(f"teacher: held-out ppl {teacher_test.ppl:.2f}")
    ctx = LLMContext(teacher, tok, ref, train, val, test, val_topk.idx[:, :, 0], test_topk.idx[:, :, 0], teacher_test)
    if recipe.student.output_vocab == "trim" and recipe.student.output_vocab_when == "before":
        from .trim_first import trim_context

        ctx = trim_context(ctx, recipe, chat_data(ctx, recipe) if d.wants_chat else None)
    return ctx


def distill_llm(ctx: LLMContext, recipe: LLMRecipe, log_path: Path | None = None,
                store=None) -> tuple[object, dict]:
    """(trained student, report) for the recipe's [student] and [distill] on a prepared context; the
    student comes back on the CPU. ``log_path``: the per-step training log (JSONL); ``store``: the
    checkpoint store of the final training (:class:`edgedistill.distill.checkpoint.GenerationStore`)."""
    t_start = time.time()
    s, dist = recipe.student, recipe.distill
    calib = eval_subset(ctx.train, s.calibration_blocks)
    tutor, chain = ctx.tutor, None
    if s.stages:
        chain = progressive_shrink(
            ctx.teacher, ctx.teacher_sha or ctx.ref.sha256, s.stages, calib=calib, train=ctx.train, val=ctx.val,
            test=ctx.test,
            cfg=dist.train_config(), stage_steps=s.stage_steps, stage_teacher=s.stage_teacher,
            importance=s.importance, intermediate_size=s.intermediate_size,
            topk_for=lambda m, sha, b: topk_of(Tutor(m, sha, ctx.tok, tutor.tokenizer_sha), b, dist.top_k),
            val_teacher_top1=ctx.val_top1, test_teacher_top1=ctx.test_top1)
        student, plan = chain.student, chain.plan
        tutor = Tutor(chain.teacher, chain.teacher_sha, ctx.tok, tutor.tokenizer_sha)
    else:
        student, plan = plan_student(ctx.teacher, calib, num_layers=s.num_layers, layers=s.layers,
                                     importance=s.importance, intermediate_size=s.intermediate_size)
    dev = runtime(dist).device
    before = evaluate_lm(student.to(dev), ctx.test, teacher_top1=ctx.test_top1, desc="student test")
    say(f"student: {plan.describe()}, held-out ppl before training {before.ppl:.2f}")
    hidden_map = None
    if dist.hidden_weight > 0:
        hidden_map = hidden_block_map(plan.layers if chain is None else chain.tutor_layers)
        by = "teacher" if chain is None or chain.teacher is ctx.teacher else "previous stage's"
        say(f"hidden-state transfer (weight {dist.hidden_weight:g}): student block -> {by} block {hidden_map}")
    chat_set = ctx.chat if ctx.chat is not None else chat_data(ctx, recipe) if recipe.data.wants_chat else None
    mix = None
    if chat_set is not None and recipe.data.chat_ratio > 0:
        mix = ChatMix(chat_set.train, recipe.data.chat_ratio, chat_set.pad_id, recipe.data.block_size)
    student, result, extra = teach(student, tutor, ctx.train, ctx.val, dist, val_teacher_top1=ctx.val_top1,
                                   hidden_map=hidden_map, log_path=log_path, store=store, chat=mix)
    after = evaluate_lm(student.to(dev), ctx.test, teacher_top1=ctx.test_top1, desc="student test")
    quantized = None
    if dist.qat != "none":  # what the QAT scheme's export ships, measured on the same blocks
        from .qat import quantized_eval

        quantized = quantized_eval(student, ctx.test, ctx.test_top1).as_dict()
        say(f"student: held-out ppl as {dist.qat} {quantized['ppl']:.2f} (fake-quant = the export's quantization)")
    say(f"student: held-out ppl after training {after.ppl:.2f} (teacher {ctx.teacher_test.ppl:.2f}), "
        f"agreement {after.agreement:.3f}, {result.tokens_per_s:.0f} train tokens/s")
    chat = None
    if chat_set is not None:
        chat = {"ratio": recipe.data.chat_ratio, "train_prompts": len(chat_set.train) if mix else 0,
                "answers_generated": chat_set.generated, "answers_closed_at_sentence": chat_set.closed,
                "answers_cache": str(chat_set.folder)}
        if chat_set.held_out:
            chat.update(evaluate_chat(student, ctx.tok, chat_set.held_out, chat_set.stops, chat_set.pad_id,
                                      recipe.data.chat_answer_tokens))
            say(f"chat (held-out {chat['prompts']} prompts): non-empty {chat['chat_nonempty_rate']:.1%} (teacher "
                f"{chat['teacher_nonempty_rate']:.1%}), agreement {chat['chat_agreement']:.3f}, "
                f"ROUGE-L vs teacher {chat['chat_rougeL_vs_teacher']:.3f}")
    student.to("cpu")
    trim = None
    if ctx.trim is not None:
        from .trim_first import held_out_cost

        trim = held_out_cost(student, ctx.trim)
        ov, small_json = ctx.trim.plan, ctx.trim.small_json
        say(f"output vocabulary: student held-out ppl per full-vocabulary token {trim['test_ppl_trimmed']:.2f} "
            f"(teacher {trim['teacher_test_ppl_full']:.2f}, trimmed {trim['teacher_test_ppl_trimmed']:.2f}), "
            f"{trim['tokens_per_full_token']:.3f} tokens per full token")
    elif s.output_vocab == "trim":
        from .trim_student import trim_student

        student, ov, small_json, trim = trim_student(
            student, ctx.tok, load_blocks(recipe, ctx.tok)["train"], ctx.test, s,
            chat_train=mix.examples if mix else (), chat_set=chat_set,
            chat_answer_tokens=recipe.data.chat_answer_tokens)
    d = recipe.data
    report = {
        "recipe": recipe.name,
        "teacher": {"source": ctx.ref.source, "sha256": ctx.ref.sha256, "test": ctx.teacher_test.as_dict()},
        "student": {"layers": plan.layers, "intermediate_size": plan.intermediate_size, "importance": plan.method,
                    "scores": plan.scores, "test_before": before.as_dict(), "test_after": after.as_dict(),
                    "test_after_quantized": quantized,
                    "stages": None if chain is None else [r.as_dict() for r in chain.stages]},
        "distill": {"mode": dist.mode, "loss": dist.loss, "top_k": dist.top_k, "temperature": dist.temperature,
                    "tail": dist.tail, "ce_weight": dist.ce_weight, "qat": dist.qat, **extra, **result.as_dict()},
        "data": {"source": d.source, "block_size": d.block_size, "train_blocks": len(ctx.train),
                 "val_blocks": len(ctx.val), "test_blocks": len(ctx.test)},
        "elapsed_s": round(time.time() - t_start, 1),
    }
    if chat is not None:
        report["chat"] = chat
    if trim is not None:
        report["output_vocab"] = trim
        report[TRIMMED_KEY] = (ov, small_json)  # for save_student; not JSON, popped before writing
    return student, report


TRIMMED_KEY = "_output_vocab"


def save_student(student, tok, report: dict, dest: Path) -> Path:
    """The student folder (HF model + tokenizer + llm_distill.json), written atomically; a trimmed student
    gets its own tokenizer.json and output_vocab.json (:mod:`.output_vocab`)."""
    from . import output_vocab

    trimmed = report.pop(TRIMMED_KEY, None)
    with atomic_dir(dest) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if trimmed is not None:
            output_vocab.write(tmp, *trimmed)
        write_json_atomic(tmp / "llm_distill.json", report)
    return dest


def chat_data(ctx: LLMContext, recipe: LLMRecipe):
    """The recipe's chat prompts with the teacher's answers (generated once, cached): ``chat_prompts`` train
    and ``chat_eval_prompts`` held-out ones."""
    d = recipe.data
    chat = build_chat_set(ctx.tutor, ctx.train, n_train=d.chat_prompts if d.chat_ratio > 0 else 0,
                          n_held_out=d.chat_eval_prompts, n_instructions=d.chat_instructions,
                          max_new_tokens=d.chat_answer_tokens, max_prompt_tokens=d.block_size - d.chat_answer_tokens,
                          seed=0)  # not the training seed: every run of a recipe is measured on the same prompts
    say(f"chat: {len(chat.train)} train / {len(chat.held_out)} held-out prompts, teacher answers "
        f"{chat.generated} generated now, the rest cached ({chat.folder}); {chat.closed} train answers cut off by "
        f"chat_answer_tokens closed at their last sentence end")
    return chat


def llm_checkpoints(recipe: LLMRecipe, teacher_sha: str, out: Path) -> Checkpoints | None:
    """The checkpoints of an LLM distill run in ``OUT/checkpoints`` (the shared store and layout); None when
    ``checkpoint_every = 0``. Like the encoder stage's, the fingerprint leaves out where training runs."""
    d = recipe.distill
    every = d.eval_every if d.checkpoint_every is None else d.checkpoint_every
    if not every:
        return None
    table = as_dict(recipe)
    table.pop("source_path", None)
    table["distill"].pop("device", None)
    return Checkpoints(out / "checkpoints", every, sha256_json({"recipe": sha256_json(table), "teacher": teacher_sha}))


def run_llm_distill(recipe: LLMRecipe, out: str | Path) -> Path:
    t_start = time.time()
    out = Path(out)
    ctx = prepare_llm(recipe)
    checkpoints = llm_checkpoints(recipe, ctx.ref.sha256, out)
    if checkpoints is not None and not checkpoints.check():
        checkpoints.start()
    student, report = distill_llm(ctx, recipe, log_path=out / "train_log.jsonl",
                                  store=None if checkpoints is None else checkpoints.gen(1))
    report["elapsed_s"] = round(time.time() - t_start, 1)
    # a student trimmed first is saved like one trimmed after: the teacher's tokenizer files, then the trimmed
    # tokenizer.json written over them (output_vocab.write)
    dest = save_student(student, ctx.tok if ctx.trim is None else ctx.trim.full_tok, report, out / "student")
    if checkpoints is not None:
        checkpoints.remove()  # the student folder now holds the result; resuming is no longer needed
    return dest


def load_blocks(recipe: LLMRecipe, tok) -> dict[str, np.ndarray]:
    """Packed blocks per split: the Brown corpus, or a UTF-8 text file whose documents are blank-line separated."""
    d = recipe.data
    if d.source == "brown":
        return brown_blocks(tok, d.block_size, tuple(d.split))
    if d.path is None:
        raise RecipeError("[data] source 'txt' needs 'path' (a UTF-8 text file)")
    path = recipe.resolve(d.path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the text file ({e})") from None
    docs = [Document(id=f"{path.name}:{i}", genre="", text=t.strip())
            for i, t in enumerate(text.split("\n\n")) if t.strip()]
    parts = split_documents(docs, tuple(d.split))
    return {name: cached_blocks(f"txt-{name}", [x.text for x in ds], [x.id for x in ds], tok, d.block_size)
            for name, ds in parts.items()}
