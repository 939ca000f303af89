"""``edgedistill run`` for an LLM recipe: distill -> export -> bench -> report, in one run folder.

    OUT/student/                 llm distill (HF folder + llm_distill.json)
    OUT/bundles/SCHEME[.zip]     one causal-LM bundle per [export] scheme
    OUT/bundles/teacher-SCHEME   the teacher with [bench] teacher_scheme (same-scheme reference)
    OUT/bench/llm_bench.json|md  the bench
    OUT/report/llm_report.json|md

Each stage reads what the one before wrote, so any of them can be rerun alone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import ModelError
from ..fileutil import write_json_atomic, write_text_atomic
from ..progress import progress, say
from .chat_eval import chat_markdown
from .generate import EagerLM, Sampling, generate_text
from .recipe import DEFAULT_ATTENTION, LLMRecipe

REPORT_SCHEMA = "edgedistill.llm-report/1"


def _teacher_folder(recipe: LLMRecipe) -> Path:
    from .teacher import resolve_llm_teacher

    spec = recipe.teacher
    path = None if spec.path is None else recipe.resolve(spec.path)
    return Path(resolve_llm_teacher(package=spec.package, path=path, sha256=spec.sha256).folder)


def _student(out: Path) -> Path:
    student = out / "student"
    if not (student / "config.json").is_file():
        raise ModelError(f"{student}: no student yet; run 'edgedistill llm distill RECIPE -o {out}' first")
    return student


def run_export_stage(recipe: LLMRecipe, out: str | Path) -> dict[str, Path]:
    """One bundle per [export] scheme (plus the teacher's [bench] teacher_scheme bundle)."""
    from ..export.schemes import get_scheme
    from .bundle import export_llm_bundle

    out, e = Path(out), recipe.export
    student = _student(out)
    bundles = {}
    for scheme in e.schemes:
        t0 = time.time()
        say(f"export: student -> {scheme} bundle ({get_scheme(scheme).backend}, context {e.max_cache_len})")
        bundles[scheme] = export_llm_bundle(student, out / "bundles" / scheme, scheme, target=e.target,
                                            max_cache_len=e.max_cache_len, zip_bundle=e.zip,
                                            attention=_attention(e, scheme))
        say(f"export: {bundles[scheme]} in {time.time() - t0:.0f} s")
    ts = recipe.bench.teacher_scheme
    if ts != "none":
        dest = out / "bundles" / f"teacher-{ts}"
        folder = _teacher_folder(recipe)
        if reusable_bundle(dest, folder, e.max_cache_len, _attention(e, ts)):
            say(f"export: {dest} is up to date (teacher {ts})")
        else:
            t0 = time.time()
            say(f"export: teacher -> {ts} bundle (the same-scheme reference; 10+ minutes on 2 busy cores for "
                "a 135M model, then reused)")
            # the same attention as the students': the same-scheme speed comparison is program against program
            export_llm_bundle(folder, dest, ts, target=e.target, max_cache_len=e.max_cache_len,
                              attention=_attention(e, ts))
            say(f"export: {dest} in {time.time() - t0:.0f} s")
        bundles[f"teacher-{ts}"] = dest
    return bundles


def _attention(e, scheme: str) -> str:
    """[export] attention for an ExecuTorch scheme; ONNX schemes take the default (they have no such choice)."""
    from ..export.schemes import get_scheme

    return e.attention if get_scheme(scheme).backend == "executorch" else "filled"


def requested_attention(manifest: dict) -> str:
    """The attention a bundle was exported with (``program.fallback_from`` when the decoder fell back to
    ``static``); bundles from before the key were all exported with ``filled``, the default then."""
    program = manifest.get("program") or {}
    return program.get("fallback_from", program.get("attention", "filled"))


def reusable_bundle(dest: Path, source: Path, max_cache_len: int | None = None,
                    attention: str = DEFAULT_ATTENTION) -> bool:
    """A teacher bundle from the same teacher folder, context and attention that still verifies is not exported
    again."""
    from ..runtime.format import verify_bundle

    try:
        m = verify_bundle(dest)
        return (m["source"]["student"] == str(source.resolve())
                and (max_cache_len is None or m["generation"]["max_context"] == max_cache_len)
                and requested_attention(m) == attention)
    except Exception:  # missing, tampered or foreign: export afresh
        return False


def run_bench_stage(recipe: LLMRecipe, out: str | Path) -> dict:
    from .bench import LLMModel, run_llm_bench

    out, b = Path(out), recipe.bench
    models = [LLMModel(f"student-{s}", "bundle", str(out / "bundles" / s), "student") for s in recipe.export.schemes]
    if b.teacher_scheme != "none":
        models.append(LLMModel(f"teacher-{b.teacher_scheme}", "bundle", str(out / "bundles" /
                                                                            f"teacher-{b.teacher_scheme}"), "teacher"))
    if b.eager_teacher:
        models.append(LLMModel("teacher-eager", "eager", str(_teacher_folder(recipe)), "reference"))
    return run_llm_bench(models, out / "bench", threads=tuple(b.threads), repeats=b.repeats,
                         prompt_tokens=b.prompt_tokens, new_tokens=b.new_tokens, targets=b.targets)


def greedy_outputs(recipe: LLMRecipe, out: Path) -> list[dict]:
    """Each fixed prompt's greedy continuation by the teacher and by every student bundle."""
    from .bundle import open_llm_bundle

    b = recipe.bench
    sampling = Sampling(max_new_tokens=b.prompt_max_tokens)
    models = {f"student-{s}": open_llm_bundle(out / "bundles" / s) for s in recipe.export.schemes}
    if b.teacher_scheme != "none":
        models[f"teacher-{b.teacher_scheme}"] = open_llm_bundle(out / "bundles" / f"teacher-{b.teacher_scheme}")
    rows = [{"prompt": p} for p in b.prompts]
    for row in progress(rows, desc="greedy outputs for the report", unit="prompt"):
        for name, m in models.items():
            row[name] = m.generate(row["prompt"], sampling)
    if b.teacher_scheme == "none":
        from .teacher import load_causal_lm

        model, tok = load_causal_lm(_teacher_folder(recipe))
        for row in rows:
            row["teacher-eager"] = generate_text(EagerLM(model, 10_000), tok, row["prompt"], sampling)
    return rows


def run_report_stage(recipe: LLMRecipe, out: str | Path) -> dict:
    out = Path(out)
    distill = json.loads((_student(out) / "llm_distill.json").read_text())
    bench_path = out / "bench" / "llm_bench.json"
    if not bench_path.is_file():
        raise ModelError(f"{bench_path}: no bench yet; run the bench stage first")
    bench = json.loads(bench_path.read_text())
    bundles = {}
    for s in recipe.export.schemes:
        man = json.loads((out / "bundles" / s / "manifest.json").read_text())
        bundles[s] = {"path": str(out / "bundles" / s), "model_bytes": man["sizes"]["model_bytes"],
                      "bundle_bytes": sum(f["bytes"] for f in man["files"].values())}
    teacher_fp32 = distill["teacher"].get("fp32_weight_bytes")
    if teacher_fp32 is None:
        rows = [r for r in bench["models"] if r["role"] != "student"]
        teacher_fp32 = rows[0]["params"] * 4 if rows else None
    report = {
        "schema": REPORT_SCHEMA, "recipe": recipe.name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "headline": headline(distill, bench, bundles, teacher_fp32),
        "distill": distill, "bundles": bundles,
        "bench": {k: v for k, v in bench.items() if k != "markdown_table"},
        "greedy_outputs": greedy_outputs(recipe, out),
    }
    dest = out / "report"
    write_json_atomic(dest / "llm_report.json", report)
    write_text_atomic(dest / "llm_report.md", markdown(report, bench.get("markdown_table", "")))
    say(f"report: {dest / 'llm_report.md'}")
    return report


def headline(distill: dict, bench: dict, bundles: dict, teacher_fp32: int | None) -> dict:
    h = {"teacher_ppl": distill["teacher"]["test"]["ppl"],
         "student_ppl_before": distill["student"]["test_before"]["ppl"],
         "student_ppl": distill["student"]["test_after"]["ppl"],
         "student_agreement": distill["student"]["test_after"].get("agreement")}
    if "et-8da4w" in bundles and teacher_fp32:
        h["size_ratio"] = teacher_fp32 / bundles["et-8da4w"]["model_bytes"]
    for name, r in bench.get("ratios", {}).items():
        h.setdefault("decode_speedup_same_scheme", {})[name] = r["decode_speedup"]
    chat = distill.get("chat") or {}
    for key in ("chat_nonempty_rate", "chat_agreement", "chat_rougeL_vs_teacher"):
        if key in chat:
            h[key] = chat[key]
    trim = distill.get("output_vocab")
    if trim:  # the bundles hold the trimmed student: its cost, measured on the same held-out text
        h["output_vocab"] = {k: trim[k] for k in ("kept", "full_size", "tokens_per_full_token", "test_ppl_full",
                                                  "test_ppl_trimmed", "chat") if k in trim}
    return h


def markdown(report: dict, bench_table: str) -> str:
    h = report["headline"]
    lines = [f"# LLM report: {report['recipe']}", "",
             f"Held-out perplexity: teacher {h['teacher_ppl']:.2f}, student before training "
             f"{h['student_ppl_before']:.2f}, after {h['student_ppl']:.2f}"
             + (f" (top-1 agreement with the teacher {h['student_agreement']:.3f})" if h.get("student_agreement")
                is not None else "") + "."]
    if "size_ratio" in h:
        lines.append(f"Teacher fp32 weights / student et-8da4w .pte: {h['size_ratio']:.2f}x.")
    if h.get("output_vocab"):
        o = h["output_vocab"]
        chat = o.get("chat") or {}
        lines.append(f"Trimmed vocabulary: {o['kept']:,} of {o['full_size']:,} tokens, "
                     f"{o['tokens_per_full_token']:.3f} tokens per full-vocabulary token on held-out text; "
                     f"perplexity per full-vocabulary token "
                     f"{o['test_ppl_full']:.2f} before trimming, {o['test_ppl_trimmed']:.2f} after"
                     + (f"; chat non-empty {chat['chat_nonempty_rate']:.1%}, ROUGE-L vs teacher "
                        f"{chat['chat_rougeL_vs_teacher']:.3f} after trimming" if chat else "") + ".")
    lines += ["", *chat_markdown(report["distill"].get("chat") or {}),
              "## Bench (energy is modelled, not measured)", "", bench_table, "", "## Greedy outputs", ""]
    for row in report["greedy_outputs"]:
        lines.append(f"**Prompt:** {row['prompt']}")
        lines.append("")
        lines.append("| model | continuation |")
        lines.append("|---|---|")
        for k, v in row.items():
            if k != "prompt":
                lines.append(f"| {k} | {' '.join(v.split()).replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


def run_llm(recipe: LLMRecipe, out: str | Path) -> dict:
    from .stage import run_llm_distill

    out = Path(out)
    t0 = time.time()
    say(f"[1/4] distill ({recipe.name})")
    run_llm_distill(recipe, out)
    say(f"[2/4] export ({', '.join(recipe.export.schemes)}) after {time.time() - t0:.0f} s")
    run_export_stage(recipe, out)
    say(f"[3/4] bench after {time.time() - t0:.0f} s")
    run_bench_stage(recipe, out)
    say(f"[4/4] report after {time.time() - t0:.0f} s")
    report = run_report_stage(recipe, out)
    report["elapsed_s"] = round(time.time() - t0, 1)
    write_json_atomic(out / "report" / "llm_report.json", report)
    say(f"done in {report['elapsed_s'] / 60:.1f} min: {out}")
    return report
