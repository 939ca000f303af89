"""Bench models named by path, outside a run folder (``edgedistill bench --model PATH ...``).

Each path may be a Hugging Face folder, an ONNX file, an ExecuTorch ``.pte`` file or a bundle
(:mod:`edgedistill.bench.kinds`). The recipe supplies the data (its test split), the latency grid,
runs and repeats; the optional teacher is the reference for the ratios. Unlike the run-folder
mode, every model gets its own probe, fitted on its own embeddings, since there is no fp32 family
to borrow one from.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .. import __version__
from ..errors import ModelError
from ..models.encode import batched_embed
from ..progress import say
from ..quality import batch_dependence
from ..quality.metrics import paired_difference_se
from ..recipe import Recipe
from ..targets import list_targets, load_target
from ..workspace import Workspace, set_threads
from ..measure.device_model import NOTE as ENERGY_NOTE, annotate, energy_ratios, preflight
from ..measure.energy import ENERGY_KIND
from ..measure.grid import Timed, layout, plan
from .kinds import Source, check_tokenizer_dir, detect
from ..measure import native
from ..measure.latency import measure
from ..tasks.embedding_bench import _metrics
from ..report.results import REPORT_SCHEMA, ratios
from ..measure.runners import load
from .stage import host_info, settings, write_reports

NO_TOKENIZER = "skipped: no tokenizer (a bare .onnx or .pte file; pass --tokenizer DIR)"
NATIVE_QUALITY = ("not scored: the native runtime runs the same .pte as the executorch runner (outputs within 1e-5, "
                  "tests/unit/test_native.py); bench the bundle itself for its quality")


def _names(sources: list[Source]) -> list[str]:
    names: list[str] = []
    for s in sources:
        n = s.label
        names.append(n if n not in names else f"{n} #{len(names) + 1}")
    return names


def _tokenizer(folder: Path, cache: dict):
    if folder not in cache:
        from ..models.loading import load_tokenizer

        cache[folder] = load_tokenizer(folder)
    return cache[folder]


def _quality(ws: Workspace, runs: dict[str, tuple], threads: int, teacher: str | None) -> dict:
    """name -> metrics; ``runs``: name -> (source, tokenizer or None)."""
    r = ws.recipe
    texts, te = ws.texts("test"), ws.probe_set("test")
    embs, out = {}, {}
    order = ([teacher] if teacher else []) + [n for n in runs if n != teacher]
    for name in order:
        src, tok = runs[name]
        if tok is None:
            out[name] = {"_note": NO_TOKENIZER}
            continue
        if src.backend == native.NAME:
            out[name] = {"_note": NATIVE_QUALITY}
            continue
        normalize = r.teacher.normalize if src.normalize is None else src.normalize
        embed = load(src.backend, src.model_file, threads, src.pooling or r.teacher.pooling, normalize).embed
        # The recipe's max_length, but never past the model's own position table.
        max_len = min(r.teacher.max_length, src.shape.positions) if src.shape else r.teacher.max_length

        def on(split, positions, embed=embed, tok=tok, name=name, max_len=max_len):
            t = ws.texts(split)
            return batched_embed(embed, tok, [t[i] for i in positions], max_len, desc=f"{name}, probe ({split})")

        try:
            embs[name] = batched_embed(embed, tok, texts, max_len, desc=f"{name} (test)")
        except Exception as e:
            if src.backend != "executorch":
                raise
            # A .pte program may have been exported for one fixed shape only.
            out[name] = {"_note": f"skipped: the ExecuTorch program did not run on test batches ({e})"[:200]}
            continue
        probe = ws.fit_probe(on) if len(te.idx) >= 5 else None
        ref = embs.get(teacher, embs[name])
        out[name] = _metrics(embs[name], ref, probe, te, r.bench.spearman_sentences)
        if src.backend != "torch":  # exported files only, as in the run-folder bench
            out[name]["batch_dependence"] = batch_dependence.max_abs_diff(
                embed, tok, batch_dependence.mixed_lengths(tok, texts, max_len), max_len)
        if teacher not in embs:  # no teacher, or one without a tokenizer: nothing to compare against
            out[name].pop("cosine_to_teacher", None)
            out[name].pop("spearman_vs_teacher", None)
    return out


def _headline(entries: list[dict], quality: dict, teacher: str | None, report: dict) -> dict:
    if teacher is None:
        return {"note": "no --teacher given: no ratios"}
    by = {m["name"]: m for m in entries}
    t0 = str(report["settings"]["threads"][0])
    ref = by[teacher]
    vs = {m["name"]: ratios(ref, m, t0) for m in entries if m["name"] != teacher}
    first = next((m for m in entries if m["name"] != teacher), None)
    head = dict(vs[first["name"]]) if first else {}
    head["vs_teacher"] = vs
    head["settings"] = {"host": report["host"]["cpu"], "host_cores": report["host"]["cores"], "threads": int(t0),
                        "batch_size": report["settings"]["batch_size"],
                        "seq_length": report["settings"]["seq_length"]}
    if first:
        head["teacher"] = {"size_bytes": ref["size_bytes"], "p50_ms": ref["latency"][t0]["p50_ms"],
                           "probe_accuracy": ref["quality"].get("probe_accuracy")}
        head["student"] = {"name": first["name"], "size_bytes": first["size_bytes"],
                           "p50_ms": first["latency"][t0]["p50_ms"],
                           "probe_accuracy": first["quality"].get("probe_accuracy"),
                           "quantization": first["quantization"]}
        a, b = quality.get(first["name"], {}), quality.get(teacher, {})
        if "_correct" in a and "_correct" in b:
            head["probe_accuracy_se"] = ref["quality"]["probe_accuracy_se"]
            head["probe_accuracy_difference_se"] = paired_difference_se(a["_correct"], b["_correct"])
            head["probe_test_n"] = ref["quality"]["probe_test_n"]
        e = energy_ratios(ref, first)
        if e:
            head["energy_kind"], head["energy_ratio"] = ENERGY_KIND, e
    return head


def run_bench_models(recipe: Recipe, paths: list[str | Path], out: str | Path, teacher: str | Path | None = None,
                     targets: list[str] | None = None, tokenizer: str | Path | None = None) -> dict:
    b = recipe.bench
    set_threads()
    t_start = time.perf_counter()
    if not paths:
        raise ModelError("no model to benchmark: give at least one --model PATH")
    sources = ([detect(teacher)] if teacher else []) + [detect(p) for p in paths]
    if any(s.backend == native.NAME for s in sources) and (why := native.unavailable()):
        say(f"skipped the native runtime ({why})")
        if teacher and sources[0].backend == native.NAME:
            teacher = None
        sources = [s for s in sources if s.backend != native.NAME]
        if not sources:
            raise ModelError(f"nothing left to benchmark: the native runtime cannot be built here ({why})")
    if tokenizer is not None:
        tok_dir = check_tokenizer_dir(tokenizer)
        for s in sources:
            s.tokenizer_dir = s.tokenizer_dir or tok_dir
    device_targets = [load_target(t) for t in (targets or b.targets or list_targets())]
    main_target = load_target(targets[0]) if targets else load_target(recipe.export.targets[0])
    names = _names(sources)
    teacher_name = names[0] if teacher else None
    shapes = {n: s.shape for n, s in zip(names, sources, strict=True) if s.shape is not None}
    preflight(shapes, max(b.batch_sizes), max(b.seq_lengths))
    threads = sorted(set(b.threads or [main_target.host_threads(), 1]), reverse=True)
    ws = Workspace(recipe, out)
    toks: dict = {}
    runs = {n: (s, _tokenizer(s.tokenizer_dir, toks) if s.tokenizer_dir else None)
            for n, s in zip(names, sources, strict=True)}
    for s, tok in runs.values():
        if tok is None and s.shape is None:
            raise ModelError(f"{s.path}: no tokenizer and no readable vocabulary size to make inputs from; "
                             "pass --tokenizer DIR")
    quality = _quality(ws, runs, threads[0], teacher_name)
    timed = [Timed(n, s.backend, str(s.model_file), tok, s.shape.vocab if s.shape else None,
                   s.pooling or recipe.teacher.pooling,
                   recipe.teacher.normalize if s.normalize is None else s.normalize)
             for n, (s, tok) in runs.items()]
    with tempfile.TemporaryDirectory() as tmp:
        jobs = plan(timed, threads, b.batch_sizes, b.seq_lengths, ws.texts("test"), Path(tmp))
        lat = measure(jobs, b.warmup, b.runs, b.repeats)
    entries = []
    for n, (s, _) in runs.items():
        q = quality.get(n, {})
        entries.append({"name": n, "role": "teacher" if n == teacher_name else "model", "runtime": s.runtime,
                        "kind": s.backend, "quantization": s.quantization, "path": str(s.path),
                        "size_bytes": s.size_bytes, "quality": {k: v for k, v in q.items() if not k.startswith("_")}})
        if "_note" in q:
            entries[-1]["quality_note"] = q["_note"]
        if s.bundle and s.bundle.get("xnnpack_delegated_share") is not None:
            # A portable-kernel fallback must be visible next to every ExecuTorch latency.
            entries[-1]["xnnpack_delegated_share"] = s.bundle["xnnpack_delegated_share"]
        entries[-1]["latency"], entries[-1]["latency_grid"] = layout(lat, n, threads, b.batch_sizes, b.seq_lengths)
    annotate(entries, shapes, device_targets, b.batch_sizes[0], b.seq_lengths[0])
    host = host_info()
    report = {
        "schema_version": REPORT_SCHEMA, "kind": "edgedistill.bench", "mode": "models",
        "edgedistill_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recipe": {"name": recipe.name, "sha256": recipe.sha256()},
        "host": host,
        "settings": settings(b, threads, main_target.device.threads,
                             tokenized=all(tok is not None for _, tok in runs.values())),
        "target": {"name": main_target.name, "description": main_target.description},
        "models": entries,
        "quality": {"test_sentences": len(ws.texts("test")), "batch_dependence": batch_dependence.PROTOCOL,
                    "metric": "probe_accuracy (each model's own probe)" if any(
                        "probe_accuracy" in m["quality"] for m in entries) else None},
        "energy": {"measured": False, "energy_kind": ENERGY_KIND, "targets": [t.name for t in device_targets],
                   "note": ENERGY_NOTE + "; this host "
                           + ("exposes readable RAPL counters: each model's latency entry carries host_energy_mj, the whole "
                              "host's package energy per inference, labelled measured-rapl (host), never device energy"
                              if host["rapl"] else "has no readable RAPL energy counters, so no host energy is reported")},
    }
    report["headline"] = _headline(entries, quality, teacher_name, report)
    report["bench_seconds"] = time.perf_counter() - t_start
    write_reports(report, Path(out) / "report")
    say(f"benchmarked {len(entries)} models")
    return report
