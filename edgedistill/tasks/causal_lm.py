"""The causal-LM task: small decoders for on-device generation (assistants, translation, chat).

A causal-LM recipe is its own kind (``kind = "llm"`` at the top of the file, sections read by
:mod:`edgedistill.llm.recipe`), so this task runs as one pipeline instead of the encoder stages:

* distill: token-level KD from the teacher's top-k logits, optional hidden-state matching,
  sequence-level and on-policy KD, progressive depth (:mod:`edgedistill.llm.train`), on the shared
  training loop (checkpoints, resume, NaN stop);
* export: a KV-cache ``.pte`` program (``et-*`` schemes) or ONNX decoder, bundled with the
  tokenizer, chat template and generation defaults (:mod:`edgedistill.llm.bundle`);
* parity: held-out perplexity of the exported program against the fp32 student;
* bench: prefill and decode tokens/s at several thread counts, memory, modelled energy per token;
* runtime: ``CausalLM.generate`` / ``stream`` (greedy, top-k, top-p, stop ids).
"""

from __future__ import annotations

from pathlib import Path

from . import CAUSAL_LM, Task, register_task


def _is_recipe(path: Path) -> bool:
    from ..llm.recipe import is_llm_recipe

    return is_llm_recipe(path)


def _pipeline(path: Path, out: Path | None) -> dict:
    from ..llm.pipeline import run_llm
    from ..llm.recipe import load_llm_recipe

    recipe = load_llm_recipe(path)
    return run_llm(recipe, Path(out) if out else Path("runs") / recipe.name)


def _modes() -> list[str]:
    from ..llm.train import MODES

    return [f"mode = {m!r}" for m in MODES]


def _options() -> type:
    from ..llm.recipe import LLMDistillSpec

    return LLMDistillSpec


TASK = register_task(Task(
    name=CAUSAL_LM,
    bundle_task="text-generation",
    sections=("teacher", "data", "student", "distill", "export", "bench"),
    options_of=_options,
    outputs=("logits (next token)", "KV cache (in-program state)"),
    parity_metric="held-out perplexity of the exported program vs the fp32 student",
    quality_metric="perplexity",
    runtime_api="CausalLM.generate(prompt, Sampling) -> text; CausalLM.stream -> text pieces",
    report_rows=("teacher_ppl", "kd_ppl", "size_ratio", "decode_speedup_same_scheme"),
    pipeline=_pipeline,
    is_recipe=_is_recipe,
    methods_of=_modes,
))
