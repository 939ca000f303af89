"""The ``edgedistill llm`` group and ``edgedistill generate``: the causal-LM commands, a thin shell over
:mod:`edgedistill.api` like the rest of :mod:`edgedistill.cli`."""

from __future__ import annotations

import sys

import click

from .cli_options import EXPECT_ID, PUBLIC_KEY, out_opt


@click.group()
def llm():
    """Causal language models: distil a small LM teacher into a shallower student (see docs/llm.md)."""


@llm.command("distill")
@click.argument("recipe", type=click.Path(dir_okay=False))
@out_opt
def llm_distill(recipe, out):
    """Prune the teacher to a student by layer importance and train it with top-k KD (writes OUT/student/).

    \b
    Example:
      edgedistill llm distill examples/llm/recipe.toml -o runs/llm
    """
    from . import api

    click.echo(api.llm_distill(recipe, out))


@llm.command("export")
@click.argument("student", type=click.Path(file_okay=False, exists=True))
@click.option("--out", "-o", type=click.Path(file_okay=False), required=True, help="Bundle folder to write.")
@click.option("--scheme", default="et-8da4w", show_default=True,
              help="Causal-LM export scheme: et-8da4w (int8 activations x int4 weights) or et-fp32 (ExecuTorch "
                   ".pte, XNNPACK); fp32, int8-weight, int4-weight or int8-dynamic (ONNX with past key/values, "
                   "torch-free at run time). Old names (8da4w, onnx-int8, ...) still work; see docs/backends.md.")
@click.option("--target", "-t", default=None, help="Device target recorded in the bundle (e.g. phone).")
@click.option("--max-cache-len", type=click.IntRange(min=2), default=None,
              help="Context (prompt + new tokens) of the static KV cache (default: 512, capped by the model).")
@click.option("--zip", "zip_bundle", is_flag=True, help="Also write OUT.zip (one file to ship).")
@click.option("--attention", type=click.Choice(["custom", "filled", "static"]), default=None,
              help="ExecuTorch schemes (default: custom): 'custom' uses ExecuTorch's LLM kernels "
                   "(llama::custom_sdpa), the fastest decode, run by ExecuTorch's Android/iOS LLM runtimes, the "
                   "Python runtime and the native runner; 'filled' uses standard ops only, for an app runtime "
                   "without the LLM kernels (~15-20% slower decode); 'static' attends over the whole cache (any "
                   "HF decoder). ONNX schemes take none. See docs/llm.md.")
def llm_export(student, out, scheme, target, max_cache_len, zip_bundle, attention):
    """Export a causal-LM folder to a bundle: model.pte, tokenizer (+ chat template), generation config,
    manifest with the sha256 of every file.

    \b
    Example:
      edgedistill llm export runs/llm/student --scheme et-8da4w --target phone -o runs/llm/bundles/et-8da4w --zip
    """
    from . import api

    click.echo(api.llm_export(student, out, scheme=scheme, target=target, max_cache_len=max_cache_len,
                              zip_bundle=zip_bundle, attention=attention))


@llm.command("bench")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--teacher-bundle", type=click.Path(exists=True), default=None,
              help="The teacher exported with the same scheme: the reference for the speed-up.")
@click.option("--eager", "eager", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Also time an HF causal-LM folder in eager PyTorch (reference; repeatable).")
@click.option("--out", "-o", type=click.Path(file_okay=False), default="runs/llm-bench", show_default=True,
              help="Folder for llm_bench.json and llm_bench.md.")
@click.option("--threads", default="1,2", show_default=True, help="Comma-separated thread counts.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Fresh processes per model and thread count (medians are reported).")
@click.option("--prompt-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--new-tokens", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--target", "-t", "targets", multiple=True, help="Targets for modelled energy (default: phone).")
def llm_bench(bundles, teacher_bundle, eager, out, threads, repeats, prompt_tokens, new_tokens, targets):
    """Time causal-LM bundles: prefill and decode tokens/s, time to first token, peak RSS, size, modelled
    energy per token; one fresh process per model, thread count and repeat.

    \b
    Example:
      edgedistill llm bench runs/llm/bundles/et-8da4w \\
          --teacher-bundle runs/llm/bundles/teacher-et-8da4w -o runs/llm/bench
    """
    from . import api

    try:
        thread_list = [int(t) for t in threads.split(",") if t.strip()]
        if not thread_list or min(thread_list) < 1:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"expected comma-separated positive integers, got {threads!r}",
                                 param_hint="--threads") from None
    res = api.llm_bench(list(bundles), out, teacher_bundle=teacher_bundle, eager=list(eager), threads=thread_list,
                        repeats=repeats, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                        targets=list(targets) or None)
    click.echo(res["markdown_table"])


@click.command()
@click.option("--bundle", "-b", "bundle_path", type=click.Path(exists=True), required=True,
              help="Causal-LM bundle folder or .zip (from 'edgedistill llm export').")
@click.argument("prompt")
@click.option("--chat", is_flag=True, help="Wrap the prompt in the bundle's chat template (one user turn).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=64, show_default=True, help="New tokens at most.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="0 = greedy; above 0 samples (with --top-k / --top-p).")
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True, help="0 = no top-k cut.")
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (text, token counts, timings).")
@EXPECT_ID
@PUBLIC_KEY
def generate(bundle_path, prompt, chat, max_tokens, temperature, top_k, top_p, seed, as_json, expect_id, public_key):
    """Generate text from a causal-LM bundle, streaming tokens as they come; tokens/s on stderr.

    \b
    Examples:
      edgedistill generate --bundle runs/llm/bundles/et-8da4w "The history of the city"
      edgedistill generate --bundle runs/llm/bundles/et-8da4w.zip --chat "What is a phone?" --max-tokens 40
    """
    import json

    from . import api

    b = api.open_llm(bundle_path, expect_id=expect_id, public_key=public_key)
    pieces = api.generate(b, prompt, chat=chat, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                          top_p=top_p, seed=seed, stream=True)
    if as_json:
        text = "".join(pieces)
        click.echo(json.dumps({"prompt": prompt, "chat": chat, "text": text, **b.stats}))
        return
    for piece in pieces:
        click.echo(piece, nl=False)
        sys.stdout.flush()
    click.echo()
    s = b.stats
    if not s["new_tokens"]:
        click.echo(f"[{s['prompt_tokens']} prompt tokens, no new ones: the model chose a stop token first]", err=True)
        return
    dec = s.get("decode_tokens_per_s")
    click.echo(f"[{s['prompt_tokens']} prompt tokens, {s['new_tokens']} new; prefill "
               f"{s['prefill_tokens_per_s'] or 0:.1f} tok/s, decode {dec or 0:.1f} tok/s, first token after "
               f"{s['time_to_first_token_s'] * 1000:.0f} ms]", err=True)
