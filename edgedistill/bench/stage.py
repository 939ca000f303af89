"""The bench stage: teacher vs student, measured side by side, reported as JSON + Markdown."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

from .. import __version__, backends
from ..errors import ModelError
from ..export.bundle import verify_bundle
from ..export.stage import onnx_variants
from ..fileutil import write_json_atomic, write_text_atomic
from ..models.loading import load_tokenizer
from ..progress import say
from ..targets import list_targets, load_target
from ..workspace import Workspace, set_threads
from ..measure import rapl
from ..measure.calibrate import cpu_name
from ..measure.device_model import NOTE as ENERGY_NOTE, annotate, preflight
from ..measure.energy import ENERGY_KIND
from ..measure.grid import Timed, layout, plan
from ..report.html import render_html
from ..measure.latency import measure
from ..measure.macs import EncoderShape
from ..quality.batch_dependence import PROTOCOL as BATCH_PROTOCOL
from ..report.results import REPORT_SCHEMA, build_headline, render_markdown


def host_info() -> dict:
    import onnxruntime
    import torch
    import transformers

    from ..backends.ort import int8_kernels

    return {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "machine": platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__, "ort_int8_kernels": int8_kernels(),
            "rapl": rapl.available()}


def settings(b, threads: list[int], target_threads: int | None, tokenized: bool = True) -> dict:
    return {"batch_size": b.batch_sizes[0], "seq_length": b.seq_lengths[0],
            "grid": {"batch_sizes": b.batch_sizes, "seq_lengths": b.seq_lengths, "threads": threads[0]},
            "warmup": b.warmup, "runs": b.runs, "repeats": b.repeats, "threads": threads,
            "target_threads": target_threads,
            "input": "real test-split text filling every position (no padding)" if tokenized else
                     "real test-split text filling every position; random token ids for models without a tokenizer"}


def write_reports(report: dict, folder: Path) -> None:
    report["files"] = {kind: str(folder / f"report.{ext}")
                       for kind, ext in (("json", "json"), ("markdown", "md"), ("html", "html"))}
    write_json_atomic(report["files"]["json"], report)
    write_text_atomic(report["files"]["markdown"], render_markdown(report))
    write_text_atomic(report["files"]["html"], render_html([report]))
    say(f"report written to {folder}/report.{{json,md,html}} ({report['bench_seconds']:.0f} s)")


def run_bench(ws: Workspace, target: str | None = None) -> dict:
    r, b = ws.recipe, ws.recipe.bench
    set_threads()
    t0 = time.perf_counter()
    tgt = load_target(target or r.export.targets[0])
    bundle = ws.bundle_dir(tgt.name)
    if not (bundle / "manifest.json").is_file():
        raise ModelError(f"no bundle for target {tgt.name!r} at {bundle}; run 'edgedistill export' first")
    manifest = verify_bundle(bundle)
    from ..tasks import check_folder, folder_task, task_of

    task = task_of(r)
    check_folder(ws.student_dir, task.name, r)
    student_variants = onnx_variants(ws.student_dir, ws.export_dir / "student", r, [], task=task.name)
    # (the source key of a student with early exits is "WEIGHTS+EXITS"; the manifest pins the weights)
    if manifest.get("student", {}).get("sha256") != student_variants["info"]["source_sha256"].split("+")[0]:
        raise ModelError(f"bundle {bundle} was exported from another student than {ws.student_dir}; "
                         "run 'edgedistill export' again before benchmarking")
    want_teacher_onnx = [m for m in b.models if m.startswith("teacher-onnx")]
    teacher_variants = (onnx_variants(ws.teacher_ref.folder, ws.export_dir / "teacher", r, ["int8-dynamic"],
                                      task=folder_task(ws.teacher_ref.folder)) if want_teacher_onnx else None)
    scheme = manifest["quantization"]["scheme"]
    catalogue = {
        # name -> (family, backend, quantization, file); reports print the backend's label as "runtime"
        "teacher-pytorch": ("teacher", "torch", "fp32", ws.teacher_ref.weights),
        "teacher-onnx": ("teacher", "onnxruntime", "fp32",
                         teacher_variants and teacher_variants["paths"]["fp32"]),
        "teacher-onnx-int8": ("teacher", "onnxruntime", "int8-dynamic",
                              teacher_variants and teacher_variants["paths"].get("int8-dynamic")),
        "student-onnx": ("student", "onnxruntime", "fp32", student_variants["paths"]["fp32"]),
        # The bundle's own runtime: an et-* bundle holds a .pte (the name is kept for the report contract).
        "student-onnx-int8": ("student", manifest.get("backend", "onnxruntime"), scheme,
                              bundle / manifest["model_file"]),
    }
    models = {name: catalogue[name] for name in b.models}

    threads = sorted(set(b.threads or [tgt.host_threads(), 1]), reverse=True)
    shapes = {"teacher": EncoderShape.from_config(ws.teacher[0].config),
              "student": EncoderShape.from_config(json.loads((ws.student_dir / "config.json").read_text()))}
    preflight(shapes, max(b.batch_sizes), max(b.seq_lengths))
    device_targets = [load_target(t) for t in (b.targets or list_targets())]
    exported = {n: (fam, Path(p)) for n, (fam, rt, _, p) in models.items() if rt != "torch"}
    quality = task.bench_quality(ws, ws.student_dir, exported, threads[0])
    # Each family is fed its own tokenizer's ids: a student cut from another model has another vocabulary.
    toks = {"teacher": ws.teacher[1], "student": load_tokenizer(ws.student_dir)}
    timed = [Timed(name, rt, str(ws.teacher_ref.folder if rt == "torch" else p),
                   toks[fam], pooling=r.teacher.pooling, normalize=r.teacher.normalize)
             for name, (fam, rt, q, p) in models.items()]
    with tempfile.TemporaryDirectory() as tmp:
        jobs = plan(timed, threads, b.batch_sizes, b.seq_lengths, ws.texts("test"), Path(tmp))
        lat = measure(jobs, b.warmup, b.runs, b.repeats)

    entries = []
    for name, (family, backend, quant, path) in models.items():
        q = {k: v for k, v in quality.get(name, {}).items() if not k.startswith("_")}
        entries.append({
            "name": name, "role": family, "runtime": backends.get(backend).LABEL, "quantization": quant,
            "path": str(path),
            "size_bytes": Path(path).stat().st_size,
            "quality": q,
        })
        if backend == "executorch":
            entries[-1]["xnnpack_delegated_share"] = manifest.get("xnnpack_delegated_share")
        entries[-1]["latency"], entries[-1]["latency_grid"] = layout(lat, name, threads, b.batch_sizes,
                                                                      b.seq_lengths)
    annotate(entries, shapes, device_targets, b.batch_sizes[0], b.seq_lengths[0])
    distill_json = ws.student_dir / "distill.json"
    distill = json.loads(distill_json.read_text()) if distill_json.is_file() else {}
    host = host_info()
    report = {
        "schema_version": REPORT_SCHEMA,
        "kind": "edgedistill.bench",
        "edgedistill_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recipe": {"name": r.name, "sha256": r.sha256()},
        "task": task.name,
        "host": host,
        "settings": settings(b, threads, tgt.device.threads),
        "target": {"name": tgt.name, "description": tgt.description, "bundle": str(bundle),
                   "parity": manifest.get("parity")},
        "models": entries,
        "quality": {"test_sentences": quality["_test_sentences"], "batch_dependence": BATCH_PROTOCOL,
                    "student_pytorch": {k: v for k, v in quality["student-pytorch"].items() if not k.startswith("_")},
                    "metric": task.quality_metric if any(task.quality_metric in q for k, q in quality.items()
                                                         if not k.startswith("_")) else None},
        "distill": {k: distill.get(k) for k in ("steps", "best_step", "train_seconds", "sentences_per_second",
                                                 "student", "teacher", "metrics", "loss_weights", "losses",
                                                 "evals")},
        "energy": {"measured": False, "energy_kind": ENERGY_KIND, "targets": [t.name for t in device_targets],
                   "note": ENERGY_NOTE + "; this host " +
                           ("exposes readable RAPL counters: each model's latency entry carries host_energy_mj, the "
                            "whole host's package energy per inference, labelled measured-rapl (host), never device "
                            "energy" if host["rapl"] else
                            "has no readable RAPL energy counters, so no host energy is reported")},
    }
    report.update(task.bench_extras(ws, manifest, bundle, entries, threads))
    report["headline"] = build_headline(report, quality)
    report["bench_seconds"] = time.perf_counter() - t0
    write_reports(report, ws.report_dir)
    return report
