"""The export stage: student folder -> per-target ONNX or ExecuTorch bundle behind a parity gate."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import __version__, backends
from ..errors import GateError, ModelError, RecipeError
from ..fileutil import atomic_output, scratch_file, sha256_file, write_json_atomic
from ..models.loading import weights_file
from ..progress import say
from ..targets import load_target
from ..workspace import Workspace, set_threads
from .bundle import created_with as _created_with, write_bundle, write_zip
from .onnx import GRAPH_FORMAT, input_names_for, optimize
from .parity import failure_message
from .quant import QuantContext
from ..distill.qat_schemes import check_export_scheme, get_qat
from .schemes import check_scheme_fits, get_scheme, get_task_scheme

CALIBRATION_SENTENCES = 128  # et-int8-static: a fixed sample of the training split


def onnx_variants(model_dir: Path, out_dir: Path, recipe, schemes: list[str], calibration=None,
                  task: str = "embedding") -> dict:
    """fp32 export + optimisation + each scheme, reused while the source weights are unchanged.

    ``calibration(input_names) -> QuantContext`` is called only when a scheme needs calibration data.
    ``task``: ``embedding`` (token states + pooled embedding) or ``classification`` (logits).
    """
    from ..tasks import get_task

    spec = get_task(task)
    out_dir.mkdir(parents=True, exist_ok=True)
    src_sha = sha256_file(weights_file(Path(model_dir)))
    for extra in spec.graph_inputs(Path(model_dir)):  # e.g. early exits ship in the graph: new exits, new graph
        src_sha += "+" + sha256_file(extra)
    info_path = out_dir / "export.json"
    info = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
        except ValueError:
            info = {}
    opt = out_dir / "model-fp32-opt.onnx"
    if (info.get("source_sha256") != src_sha or info.get("task", "embedding") != task or not opt.is_file()
            or info.get("graph_format") != GRAPH_FORMAT):
        say(f"exporting {model_dir} to ONNX ({task}) and fusing attention/LayerNorm/GELU")
        # Both temporaries are removed on any failure (a full disk too); only the fused graph is kept.
        with scratch_file(out_dir, "model-fp32.onnx") as raw, atomic_output(opt) as tmp:
            exp = spec.export_graph(Path(model_dir), raw, recipe)
            fused = optimize(raw, tmp, exp["model_type"], exp["num_heads"], exp["hidden_size"], exp["num_layers"])
            spec.finish_graph(tmp)
        info = {"source_sha256": src_sha, "task": task, "graph_format": GRAPH_FORMAT, "export": exp,
                "optimize": fused, "schemes": {}}
    paths = {"fp32": opt}
    opt_sha = sha256_file(opt)
    for name in schemes:
        if name == "fp32":
            continue
        scheme = get_scheme(name)
        ctx = calibration(info["export"]["input_names"]) if scheme.calibrated and calibration else None
        # A calibrated variant is stale when its calibration sentences change, too.
        key = opt_sha if ctx is None else f"{opt_sha}+{ctx.fingerprint()}"
        dest = out_dir / f"model-{name}.onnx"
        if info["schemes"].get(name) != key or not dest.is_file():
            how = ("" if ctx is None else f", {len(ctx.texts)} calibration sentences" if not ctx.activation_ranges
                   else f", the {len(ctx.activation_ranges)} activation ranges learned in training")
            say(f"quantizing {opt.name} ({name}{how})")
            with atomic_output(dest) as tmp:
                scheme.fn(opt, tmp, ctx)
            info["schemes"][name] = key
        paths[name] = dest
    write_json_atomic(info_path, info)
    return {"paths": paths, "info": info}


def et_variant(ws: Workspace, model_dir: Path, out_dir: Path, scheme, task: str = "embedding") -> tuple[Path, dict]:
    """One ExecuTorch scheme's .pte, reused while the weights and the export settings are unchanged."""
    from ..tasks import get_task
    from .executorch import EtOptions

    r = ws.recipe
    out_dir.mkdir(parents=True, exist_ok=True)
    key = {"source_sha256": sha256_file(weights_file(Path(model_dir))), "max_length": r.teacher.max_length,
           "pooling": r.teacher.pooling, "normalize": r.teacher.normalize}
    key["task"] = task
    key["graph_inputs"] = [sha256_file(p) for p in get_task(task).graph_inputs(Path(model_dir))]
    info_path = out_dir / f"model-{scheme.name}.json"
    dest = out_dir / f"model-{scheme.name}.pte"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        info = {}
    if info.get("key") != key or info.get("pte_sha256") != (sha256_file(dest) if dest.is_file() else None):
        say(f"exporting {model_dir} to ExecuTorch ({scheme.name}, XNNPACK, {r.teacher.max_length} tokens)")
        train = ws.texts("train")
        calib = [train[i] for i in ws.sample("train", CALIBRATION_SENTENCES)] if scheme.calibrated else []
        opts = EtOptions(r.teacher.pooling, r.teacher.normalize, r.teacher.max_length, calib, task=task)
        info = {"key": key, "delegation": scheme.fn(Path(model_dir), dest, opts)}
        info["pte_sha256"] = sha256_file(dest)
        write_json_atomic(info_path, info)
    return dest, info


def measure_memory(model_path: Path, tok, texts: list[str], r) -> dict:
    """Peak memory of loading the model and running one batch of real text at max_length, in a fresh
    process (the budget check must not see this process's own memory)."""
    import tempfile

    from ..measure.latency import Job, make_inputs, run_worker

    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(tok, texts, 1, r.teacher.max_length, Path(tmp) / "inputs.npz")
        out = run_worker(Job("memory", backends.for_path(model_path).NAME, str(model_path), 1, inputs,
                             r.teacher.pooling, r.teacher.normalize),
                         warmup=1, runs=2)
    return {"peak_rss_mb": out["peak_rss_mb"], "process_mb": out["rss_before_load_mb"],
            "model_mb": out["peak_rss_mb"] - out["rss_before_load_mb"],
            "measured": "fresh process with the runtime already imported; batch 1 x max_length tokens of real "
                        "text, 1 thread; model_mb = peak RSS minus that process"}


def _calibration(ws: Workspace, student_dir: Path):
    """Training sentences (never the parity sentences) for static quantisation."""

    def make(input_names) -> QuantContext:
        from ..models.loading import load_tokenizer

        r = ws.recipe
        train = ws.texts("train")
        texts = [train[i] for i in ws.sample("train", r.export.calibration_sentences)]
        tok = load_tokenizer(student_dir, padding_side=None)
        return QuantContext(tok, texts, r.teacher.max_length, list(input_names),
                            activation_ranges=qat_ranges(student_dir))

    return make


def qat_ranges(model_dir: Path) -> list:
    """(weight, rmin, rmax) of a student trained with ``qat = "int8-static"`` (none otherwise)."""
    from ..distill.qat_static import read_ranges

    named = read_ranges(model_dir)
    if not named:
        return []
    from safetensors.numpy import load_file

    weights = load_file(str(weights_file(Path(model_dir))))
    return [(weights[name], lo, hi) for name, (lo, hi) in named]


def run_export(ws: Workspace, targets: list[str] | None = None, quant: str | None = None,
               student_dir: Path | None = None, zip_bundle: bool = False) -> list[Path]:
    from ..tasks import check_folder, task_of

    r = ws.recipe
    set_threads()
    student_dir = Path(student_dir or ws.student_dir)
    if not (student_dir / "config.json").is_file():
        raise ModelError(f"no student at {student_dir}; run 'edgedistill distill' first or pass --student")
    task = task_of(r)
    check_folder(student_dir, task.name, r)
    loaded = [load_target(t) for t in (targets or r.export.targets)]
    qat = get_qat(r.distill.qat, "encoder")
    if qat.export_scheme and not quant and r.export.quantization == "auto":
        say(f"[distill] qat = {qat.name!r}: every target exports {qat.export_scheme} (the scheme training emulated)")
    plan = {}
    for t in loaded:
        own = get_task_scheme(t.export.quantization, "encoder", f"{t.path} [export] quantization")
        if own.backend != t.export.backend:
            raise RecipeError(f"{t.path} [export]: quantization {own.name!r} is an {own.backend} scheme but "
                              f"backend is {t.export.backend!r}; set backend = \"{own.backend}\" or name a "
                              f"{t.export.backend} scheme")
        scheme = get_task_scheme(quant or (r.export.quantization if r.export.quantization != "auto"
                                           else qat.export_scheme or t.export.quantization), "encoder",
                                 "[export] quantization / --quant")
        check_export_scheme(qat.name, scheme.name, "--quant")
        check_scheme_fits(scheme, t)
        plan[t.name] = (t, scheme)
    t0 = time.perf_counter()
    onnx_schemes = sorted({s.name for _, s in plan.values() if s.backend == "onnxruntime"})
    if onnx_schemes:
        variants = onnx_variants(student_dir, ws.export_dir / "student", r, onnx_schemes,
                                 calibration=_calibration(ws, student_dir), task=task.name)
        fused = variants["info"]["optimize"]
        say(f"exported ONNX (opset {r.export.opset}); fused ops {fused['fused_ops']}")
    exporter = task.exporter(ws, student_dir)
    exporter.prepare(onnx_schemes)
    et = {s.name: et_variant(ws, student_dir, ws.export_dir / "student", s, task=task.name)
          for _, s in plan.values() if s.backend == "executorch"}
    tok, texts = exporter.tok, exporter.texts
    written = []
    for name, (target, scheme) in plan.items():
        model_path, et_info = et[scheme.name] if scheme.backend == "executorch" else (variants["paths"][scheme.name],
                                                                                      None)
        rep = exporter.check(model_path, scheme, target)
        if not rep.passed:
            raise GateError(failure_message(rep, name))
        size_mb = model_path.stat().st_size / 1e6
        budget = target.budget.model_mb.value
        if size_mb > budget:
            raise GateError(f"bundle for target {name!r} refused: model is {size_mb:.1f} MB, over the target's "
                            f"{budget:g} MB budget; keep fewer layers, narrow the FFN or use a smaller scheme")
        memory = measure_memory(model_path, tok, texts, r)
        mem_budget = target.budget.memory_mb.value
        if memory["model_mb"] > mem_budget:
            raise GateError(f"bundle for target {name!r} refused: loading and running the model took "
                            f"{memory['model_mb']:.0f} MB of memory (peak RSS {memory['peak_rss_mb']:.0f} MB minus "
                            f"{memory['process_mb']:.0f} MB of process with its runtime imported), over the target's {mem_budget:g} MB "
                            f"budget; use a smaller scheme, fewer layers or a shorter [teacher] max_length")
        fields, extra = exporter.manifest_fields(scheme, model_path, target, pte=et_info is not None)
        manifest = {
            "task": task.bundle_task,
            "created_by": f"edgedistill {__version__}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "target": {"name": target.name, "description": target.description, "threads": target.device.threads},
            "backend": scheme.backend,
            "quantization": {"scheme": scheme.name, "description": scheme.description},
            "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]}
                       for n in (variants["info"]["export"]["input_names"] if et_info is None else
                                 input_names_for(tok))],
            **fields,
            "max_length": r.teacher.max_length,
            "fused_ops": fused["fused_ops"] if et_info is None else {},
            "parity": rep.to_dict(),
            "memory": memory,
            "student": {"path": str(student_dir), "sha256": sha256_file(weights_file(student_dir))},
            "recipe_sha256": r.sha256(),
            "created_with": _created_with(scheme.backend),
        }
        if et_info is not None:
            # A fixed-shape program: apps pad or clip every sentence to max_length, one at a time.
            for io in manifest["inputs"] + manifest["outputs"]:
                io["shape"] = [1, *(r.teacher.max_length if d == "sequence" else d for d in io["shape"][1:])]
            manifest["xnnpack_delegated_share"] = et_info["delegation"]["xnnpack_delegated_share"]
            manifest["delegation"] = et_info["delegation"]
        dest = write_bundle(ws.bundle_dir(name), model_path, student_dir, manifest,
                            model_name="model.pte" if et_info else "model.onnx", extra_files=extra or None)
        share = f", XNNPACK share {et_info['delegation']['xnnpack_delegated_share']:.2f}" if et_info else ""
        say(f"bundle {dest}: {scheme.name}, {size_mb:.1f} MB{share}, parity passed ({rep.summary()})")
        written.append(dest)
        if zip_bundle:
            say(f"bundle zip {write_zip(dest)}")
    say(f"export done in {time.perf_counter() - t0:.0f} s")
    return written


# Public names for scripts that run the gate's pieces themselves (benchmarks/export_matrix.py).
def parity_reference(ws: Workspace, student_dir: Path):
    """``(tokenizer, texts, fp32 embeddings, probe, probe rows, probe labels)`` of an embedding student."""
    from ..tasks.embedding import reference

    return reference(ws, student_dir)


calibration_factory = _calibration
"""``(ws, student_dir) -> (input_names -> QuantContext)``: training sentences for calibrated schemes."""
