"""Compare the KD techniques on one real task and write benchmarks/results/kd_methods.{json,md}.

    python benchmarks/kd_methods.py --time-one     # time one method x seed at the budget, write nothing
    python benchmarks/kd_methods.py                # the full table (~methods x seeds x that time; build
                                                   # the teacher first: edgedistill teacher classifier)
    python benchmarks/kd_methods.py --limit 2000 --steps 20 --seeds 0 --out /tmp/kd   # smoke run

Task: binary sentiment on the VADER sentences (labels = sign of the human score, |score| >= 0.5).
Teacher: the classifier built by `edgedistill teacher classifier` from the packaged all-MiniLM-L6-v2
(built first if --teacher does not exist). Student: teacher blocks 0 and 5 with a 768-wide FFN under a
copy of the teacher's head, the same for every method; the same steps, batch, learning rate and seeds.
Each method's test accuracy is the mean (and sample std) over seeds of the checkpoint with the best
validation accuracy. Baselines: the student trained on hard labels only, and the student before
training. Teacher outputs are cached once (their time is reported apart from training time).
multi_teacher adds a second teacher (--extra-teacher, built with `edgedistill teacher classifier
--unfreeze-layers 2` if missing, a few more minutes of CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

EXTRA_TEACHER = "<extra teacher>"
"""Stands for --extra-teacher in a method's ``teachers`` (the second teacher is built on first use)."""

# name -> (distill overrides, one line on what it is)
METHODS = {
    "hard_label": ({"losses": {"hard_ce": 1.0}}, "baseline: cross-entropy on the hard labels only"),
    "kd": ({"losses": {"kd": 1.0}}, "soft-label KD, KL at T=2 x T^2, teacher logits only"),
    "kd_hard_mix": ({"losses": {"kd": 0.5, "hard_ce": 0.5}}, "alpha = 0.5 mix of hard CE and KD"),
    "kd_alpha_schedule": ({"losses": {"kd": 0.2, "hard_ce": 0.8}, "final_weights": {"kd": 0.8, "hard_ce": 0.2}},
                          "mix annealed from mostly-hard to mostly-soft"),
    "reverse_kl": ({"losses": {"reverse_kl": 1.0}}, "KL(student || teacher) at T=2"),
    "jsd": ({"losses": {"jsd": 1.0}}, "generalised JSD, beta = 0.5, T=2"),
    "sorted_prob": ({"losses": {"sorted_prob": 1.0, "hard_ce": 0.5}},
                    "tokenizer-agnostic sorted-probability distance + hard CE"),
    "label_smoothing": ({"losses": {"label_smoothing": 0.5, "hard_ce": 0.5}},
                        "teacher-free virtual teacher (smoothing 0.1) + hard CE"),
    "fitnets": ({"losses": {"kd": 1.0, "fitnets": 1.0}}, "KD + hidden-state hints on both mapped layers"),
    "minilm_attention": ({"losses": {"kd": 1.0, "attention_kl": 1.0, "value_relation": 1.0}},
                         "KD + last-layer attention distribution and value-relation transfer"),
    "ema_self": ({"strategy": "ema_self", "losses": {"kd": 0.5, "hard_ce": 0.5}},
                 "teacher-free: EMA of the student (decay 0.99) as pseudo-teacher + hard CE"),
    "mutual": ({"strategy": "mutual", "losses": {"kd": 0.5, "hard_ce": 0.5}},
               "teacher-free: deep mutual learning of two peers (twice the compute per step)"),
    "curriculum": ({"losses": {"kd": 0.5, "hard_ce": 0.5}, "curriculum": "teacher_loss"},
                   "kd_hard_mix on batches growing from the teacher's easiest 25% (by its CE) to all by mid-run"),
    "stagewise": ({"strategy": "stagewise", "losses": {"kd": 0.5, "hard_ce": 0.5}},
                  "FitNets on block 0, then blocks 0-1 (deeper frozen), then kd_hard_mix: a third of the steps each"),
    "temperature_annealing": ({"losses": {"kd": 0.7, "hard_ce": 0.3}, "temperature": 4.0, "final_temperature": 1.0},
                              "KD + hard CE with T annealed linearly from 4 to 1"),
    "teacher_assistant": ({"losses": {"kd": 0.5, "hard_ce": 0.5}, "assistants": [[0, 2, 3, 5]]},
                          "teacher -> 4-block assistant -> student, kd_hard_mix, half the steps per link (same total budget)"),
    "cross_task_fitnets": ({"losses": {"fitnets": 1.0, "hard_ce": 1.0}},
                           "FitNets hints + hard CE only: the feature path a headless (cross-task) teacher allows"),
    "born_again": ({"losses": {"kd": 0.5, "hard_ce": 0.5}, "generations": 2},
                   "2 generations of the kd_hard_mix student, half the steps each (same total budget)"),
    "self_layerwise": ({"strategy": "self_layerwise", "losses": {"kd": 0.5, "hard_ce": 0.5}},
                       "kd_hard_mix on the final head + an early exit on block 0 taught by the final head"),
    "online_ensemble": ({"strategy": "online_ensemble", "losses": {"kd": 0.5, "hard_ce": 0.5}, "peers": 3},
                        "teacher-free: 3 peers, their mean logits teach each (three times the compute per step)"),
    "multi_teacher": ({"losses": {"kd": 0.5, "hard_ce": 0.5}, "teachers": [EXTRA_TEACHER], "ensemble": "confidence"},
                      "kd_hard_mix from --teacher and --extra-teacher, logits weighted by max probability"),
    "augment_self": ({"strategy": "augment_self", "losses": {"kd": 0.5, "hard_ce": 0.5}},
                     "teacher-free: clean-input predictions teach augmented input (10% drop, swap, mask each)"),
    "augment_kd": ({"strategy": "augment_kd", "losses": {"kd": 0.5, "hard_ce": 0.5}},
                   "kd_hard_mix with the student on augmented input, teacher logits of the clean input"),
}


def build_recipe(teacher: Path, steps: int, limit: int | None, threads: int, jsonl: str | None = None,
                 layers=(0, 5), ffn: int = 768):
    from edgedistill.recipe import DataSpec, DistillSpec, Recipe, StudentSpec, TeacherSpec

    data = DataSpec(source="jsonl", path=jsonl, limit=limit) if jsonl else DataSpec(source="vader", limit=limit)
    return Recipe(
        name="kd-methods",
        teacher=TeacherSpec(path=str(teacher), max_length=128),
        student=StudentSpec(layers=list(layers), intermediate_size=ffn),
        data=data,
        distill=DistillSpec.from_table(dict(strategy="classification", max_steps=steps, batch_size=32,
                                            learning_rate=1e-3, warmup_ratio=0.05, eval_every=max(1, steps // 3),
                                            eval_sentences=1000, threads=threads, temperature=2.0)),
    )


def ensure_teacher(path: Path, unfreeze_layers: int = 0) -> dict:
    from edgedistill import api

    if not (path / "teacher.json").is_file():
        print(f"building the classifier teacher in {path} (edgedistill teacher classifier --unfreeze-layers "
              f"{unfreeze_layers})", file=sys.stderr)
        api.teacher_classifier(None, path, unfreeze_layers=unfreeze_layers)
    return json.loads((path / "teacher.json").read_text())


def spec_for(base, overrides: dict, seed: int, extra_teacher: str | None = None):
    if EXTRA_TEACHER in overrides.get("teachers", ()):
        overrides = {**overrides, "teachers": [extra_teacher if t == EXTRA_TEACHER else t
                                               for t in overrides["teachers"]]}
    spec = base.replace(seed=seed, **overrides)
    if spec.options.generations > 1:
        spec = dataclasses.replace(spec, max_steps=max(1, base.max_steps // spec.options.generations))
    if spec.options.assistants:  # every link trains for max_steps: split the budget as born_again does
        spec = dataclasses.replace(spec, max_steps=max(1, base.max_steps // (len(spec.options.assistants) + 1)))
    return spec


def run_key(args, teacher_rec: dict, name: str, seed: int) -> str:
    """What decides one run's result: the method's overrides, the seed, the budget, the student and the teacher."""
    import hashlib

    what = {"method": name, "overrides": METHODS[name][0], "seed": seed, "steps": args.steps, "limit": args.limit,
            "layers": args.layers, "ffn": args.ffn, "jsonl": args.jsonl, "teacher": teacher_rec}
    if EXTRA_TEACHER in METHODS[name][0].get("teachers", ()):
        what["extra_teacher"] = json.loads((Path(args.extra_teacher) / "teacher.json").read_text())
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_one(run, base, name: str, seed: int, reuse: Path | None = None, key: str = "",
            extra_teacher: str | None = None) -> dict:
    """One method x seed; with ``reuse``, a finished run's record is read back instead of retrained
    (a long table survives an interrupted session, and new methods can be added to it)."""
    done = reuse / f"{name}-seed{seed}-{key}.json" if reuse else None
    if done is not None and done.is_file():
        print(f"{name} seed {seed}: reusing {done}", file=sys.stderr)
        return json.loads(done.read_text())
    rec = _train_one(run, base, name, seed, extra_teacher)
    if done is not None:
        from edgedistill.fileutil import write_json_atomic

        done.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(done, rec)
    return rec


def _train_one(run, base, name: str, seed: int, extra_teacher: str | None = None) -> dict:
    spec = spec_for(base, METHODS[name][0], seed, extra_teacher)
    t0, c0 = time.perf_counter(), time.process_time()
    _, _, gens = run.train(spec, desc=f"{name} seed {seed}")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    last = gens[-1]
    return {"seed": seed, "test_accuracy": last["test_accuracy"], "best_val_accuracy": last["result"].best_val_accuracy,
            "best_step": last["result"].best_step, "train_seconds": seconds, "cpu_seconds": cpu,
            **({"assistants": [{k: link[k] for k in ("kept_teacher_layers", "test_accuracy")} for link in run.links]}
               if run.links else {})}


def describe(overrides: dict) -> str:
    """The recipe column: loss weights, then any other [distill] override."""
    parts = [f"{k} {v}" for k, v in overrides.get("losses", {}).items()]
    if "final_weights" in overrides:
        parts[-1] += f" -> {overrides['final_weights']}"
    parts += [f"{k} = {v}" for k, v in overrides.items() if k not in ("losses", "final_weights")]
    return ", ".join(parts)


def _std(xs):
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def write_results(out: Path, result: dict) -> None:
    from edgedistill.fileutil import write_json_atomic, write_text_atomic

    write_json_atomic(out.with_suffix(".json"), result)
    h = result["headline"]
    lines = [
        "# KD methods on VADER sentence sentiment", "",
        f"Teacher: {result['teacher']['description']} (test accuracy {result['teacher']['test_accuracy']:.4f}). "
        f"Student: {result['settings']['student']}. Budget per run: {result['settings']['budget']}. "
        f"Seeds {result['settings']['seeds']}; test accuracy on {result['settings']['test_sentences']} labelled "
        f"test sentences, checkpoint with the best validation accuracy. Host: {result['settings']['host']}.", "",
        "| method | losses | test accuracy (mean ± std) | retention vs teacher | train s / run |",
        "|---|---|---|---|---|",
        f"| untrained student | – | {result['untrained_student']['test_accuracy']:.4f} | "
        f"{result['untrained_student']['retention']:.3f} | 0 |",
    ]
    for name, m in result["methods"].items():
        lines.append(f"| {name} | {m['recipe']} | {m['test_accuracy_mean']:.4f} ± {m['test_accuracy_std']:.4f} | "
                     f"{m['retention']:.3f} | {m['train_seconds_mean']:.0f} |")
    lines += ["", f"Best: **{h['best_method']}** {h['best_acc']:.4f} vs hard labels only {h['hard_label_acc']:.4f} "
              f"(seed spread {h['seed_spread']:.4f}); beats the hard-label baseline by more than the seed spread: "
              f"{'yes' if h['beats_hard_label_by_more_than_spread'] else 'no'}.", ""]
    lines += [f"- {n}" for n in result["notes"]]
    lines.append(f"\nProduced by `{result['command']}` in {result['wall_seconds'] / 60:.1f} min "
                 f"(teacher outputs cached in {result['cache_seconds']:.0f} s).\n")
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=str(ROOT / "runs" / "sentiment-teacher"))
    # 200 steps: one kd run took 313 s wall / 209 s CPU at 300 steps on the shared, loaded 2-core VM (load ~6);
    # ~23 s per 300 steps is what the quickstart's step rate gives on a quiet one. Sized for ~20 min of
    # training for all methods x 3 seeds on 2 quiet cores, plus the teacher passes on a cold cache.
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--limit", type=int, default=None, help="use a subset of the sentences (smoke runs)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--layers", type=int, nargs="+", default=[0, 5], help="teacher blocks the student keeps")
    ap.add_argument("--ffn", type=int, default=768, help="student FFN width")
    ap.add_argument("--extra-teacher", default=str(ROOT / "runs" / "sentiment-teacher-u2"),
                    help="second teacher for multi_teacher (built with --unfreeze-layers 2 if missing)")
    ap.add_argument("--jsonl", default=None, help="labelled JSONL instead of VADER (tests)")
    ap.add_argument("--out", default=str(HERE / "results" / "kd_methods"))
    ap.add_argument("--reuse", default=None, help="folder of finished method x seed runs: read back those whose "
                    "settings match, train and store the rest")
    ap.add_argument("--time-one", action="store_true", help="time one method x seed (kd, seed 0) and exit")
    args = ap.parse_args(argv)

    from edgedistill.bench.stage import host_info
    from edgedistill.distill.classify_stage import ClassificationRun
    from edgedistill.distill.cls_trainer import accuracy
    from edgedistill.distill.teacher_cache import teacher_targets
    from edgedistill.workspace import Workspace, set_threads

    t_start = time.perf_counter()
    set_threads(args.threads)
    teacher = Path(args.teacher).resolve()
    teacher_rec = ensure_teacher(teacher)
    extra = str(Path(args.extra_teacher).resolve())
    if any(EXTRA_TEACHER in METHODS[n][0].get("teachers", ()) for n in args.methods):
        ensure_teacher(Path(extra), unfreeze_layers=2)
    recipe = build_recipe(teacher, args.steps, args.limit, args.threads, args.jsonl, args.layers, args.ffn)
    ws = Workspace(recipe, Path(tempfile.mkdtemp(prefix="kd-methods-")))
    run = ClassificationRun(ws)
    t0 = time.perf_counter()
    teacher_acc = run.teacher_test_accuracy
    specs = [spec_for(recipe.distill, METHODS[name][0], 0, extra) for name in args.methods]
    strategies = [run.strategy(spec) for spec in specs]
    layers = sorted({i for s in strategies for i in s.teacher_hidden_indices()})
    if layers:  # one teacher pass for every layer any method needs
        teacher_targets(run.teacher.base_model, run.tokenizer, ws.teacher_ref, run.train_texts,
                        recipe.teacher.max_length, "cls", False, layers=layers, desc="teacher token states (train)")
    for s, spec in zip(strategies, specs, strict=True):  # fill every cache the methods need before any timing
        run.cache(s, spec)
    cache_seconds = time.perf_counter() - t0
    print(f"data and teacher ready; teacher outputs cached in {cache_seconds:.0f} s", file=sys.stderr)

    if args.time_one:
        one = _train_one(run, recipe.distill, "kd", args.seeds[0])
        runs = len(args.methods) * len(args.seeds)
        print(f"one method x seed (kd, {args.steps} steps, batch 32): {one['train_seconds']:.1f} s wall, "
              f"{one['cpu_seconds']:.1f} s CPU (all threads), test accuracy "
              f"{one['test_accuracy']:.4f}; {len(args.methods)} methods x {len(args.seeds)} seeds = {runs} runs "
              f"-> about {runs * one['train_seconds'] / 60:.1f} min + caches {cache_seconds:.0f} s")
        return 0

    reuse = Path(args.reuse) if args.reuse else None
    untrained = accuracy(run.initial_student, run.enc_test, run.test_labels, run.pad_id)
    methods = {}
    for name in args.methods:
        per_seed = [run_one(run, recipe.distill, name, seed, reuse, run_key(args, teacher_rec, name, seed), extra)
                    for seed in args.seeds]
        accs = [r["test_accuracy"] for r in per_seed]
        overrides = METHODS[name][0]
        methods[name] = {
            "recipe": describe(overrides),
            "what": METHODS[name][1],
            "test_accuracy_mean": statistics.mean(accs),
            "test_accuracy_std": _std(accs),
            "retention": statistics.mean(accs) / teacher_acc,
            "train_seconds_mean": statistics.mean(r["train_seconds"] for r in per_seed),
            "per_seed": per_seed,
        }
        print(f"{name}: {statistics.mean(accs):.4f} ± {_std(accs):.4f}", file=sys.stderr)

    hard = methods.get("hard_label")
    kd_methods = {n: m for n, m in methods.items() if n != "hard_label"}
    best = max(kd_methods, key=lambda n: kd_methods[n]["test_accuracy_mean"]) if kd_methods else "hard_label"
    spread = max(methods[best]["test_accuracy_std"], hard["test_accuracy_std"] if hard else 0.0)
    hard_acc = hard["test_accuracy_mean"] if hard else None
    notes = [f"{n} ({m['test_accuracy_mean']:.4f}) does not beat the hard-label baseline by more than the seed "
             "spread on this task" for n, m in kd_methods.items()
             if hard and m["test_accuracy_mean"] - hard_acc <= spread]
    result = {
        "headline": {
            "methods_benchmarked": list(methods),
            "best_method": best,
            "best_acc": methods[best]["test_accuracy_mean"],
            "hard_label_acc": hard_acc,
            "seed_spread": spread,
            "beats_hard_label_by_more_than_spread": bool(hard and methods[best]["test_accuracy_mean"] - hard_acc
                                                         > spread),
        },
        "teacher": {"path": str(teacher), "test_accuracy": teacher_acc,
                    "description": f"all-MiniLM-L6-v2 + classifier head ({teacher_rec['train']})",
                    "build": {k: teacher_rec[k] for k in ("val_accuracy", "test_accuracy", "best_epoch", "seconds")}},
        "untrained_student": {"test_accuracy": untrained, "retention": untrained / teacher_acc},
        "methods": methods,
        "settings": {"student": f"teacher blocks {args.layers}, FFN {args.ffn}, the teacher's head, word embeddings "
                                "frozen",
                     "budget": f"{args.steps} steps x batch 32, AdamW lr 1e-3, T=2",
                     "seeds": args.seeds, "train_sentences": len(run.train_texts),
                     "test_sentences": len(run.test_labels), "limit": args.limit, "host": host_info()},
        "notes": notes,
        "cache_seconds": cache_seconds,
        "wall_seconds": time.perf_counter() - t_start,
        "command": "python benchmarks/kd_methods.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_results(Path(args.out), result)
    print(json.dumps(result["headline"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
