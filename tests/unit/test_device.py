"""[distill] device / precision: resolution and refusals on this host, moving batches, chunked teacher
top-k, CPU-only checkpoints and the per-step LLM log. The GPU side is tests/unit/test_cuda.py."""

import json
import warnings

import numpy as np
import pytest
import torch
from conftest import synthetic_rows, tiny_recipe, write_jsonl
from llm_tiny import tiny_llama

from edgedistill.distill import device as dv
from edgedistill.distill.checkpoint import GenerationStore
from edgedistill.distill.losses import Outputs
from edgedistill.errors import RecipeError
from edgedistill.llm.recipe import LLMDistillSpec
from edgedistill.llm.topk_cache import teacher_topk
from edgedistill.llm.train import TrainConfig, train_causal
from edgedistill.recipe import load_recipe


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    """A pretend host with two CUDA GPUs (only the queries are faked; nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Old GPU")


def test_auto_is_the_cpu_without_cuda_and_cuda_asked_for_is_refused_naming_the_key(no_cuda):
    assert dv.resolve_device("auto") == torch.device("cpu")
    assert dv.resolve_device("cpu") == torch.device("cpu")
    for asked in ("cuda", "cuda:0"):
        with pytest.raises(RecipeError, match=r"\[distill\] key 'device'.*no CUDA GPU"):
            dv.resolve_device(asked)


def test_gpu_index_out_of_range_and_bad_names_are_refused(two_gpus):
    assert dv.resolve_device("auto") == torch.device("cuda", 0)
    assert dv.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(RecipeError, match=r"'cuda:2'.*2 CUDA GPU\(s\) \(cuda:0..cuda:1\)"):
        dv.resolve_device("cuda:2")
    for bad in ("gpu", "cuda:x", "CUDA", ""):
        with pytest.raises(RecipeError, match="key 'device'"):
            dv.resolve_device(bad)


def test_precision_refusals(two_gpus, monkeypatch):
    with pytest.raises(RecipeError, match="fp16 training needs a CUDA GPU"):
        dv.check_precision("fp16", torch.device("cpu"))
    dv.check_precision("bf16", torch.device("cpu"))  # CPU autocast, as before
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(RecipeError, match="Old GPU has no bf16 support"):
        dv.check_precision("bf16", torch.device("cuda", 0))
    dv.check_precision("fp16", torch.device("cuda", 0))
    with pytest.raises(RecipeError, match="key 'precision'"):
        dv.check_precision("int8", torch.device("cpu"))


def test_recipes_validate_device_and_precision_at_load(tmp_path, tiny_teacher):
    data = write_jsonl(tmp_path / "rows.jsonl", synthetic_rows(40))
    ok = load_recipe(tiny_recipe(tmp_path, tiny_teacher, data, distill={"device": "cuda:1", "precision": "fp16"}))
    assert (ok.distill.device, ok.distill.precision) == ("cuda:1", "fp16")  # syntax only: the host is checked at run
    assert load_recipe(tiny_recipe(tmp_path, tiny_teacher, data)).distill.device == "auto"
    with pytest.raises(RecipeError, match=r"\[distill\] key 'device'.*'tpu'"):
        load_recipe(tiny_recipe(tmp_path, tiny_teacher, data, distill={"device": "tpu"}))
    with pytest.raises(RecipeError, match="precision"):
        load_recipe(tiny_recipe(tmp_path, tiny_teacher, data, distill={"precision": "fp8"}))
    with pytest.raises(RecipeError, match="key 'device'"):
        LLMDistillSpec(device="gpu0").validate()
    with pytest.raises(RecipeError, match="key 'precision'"):
        LLMDistillSpec(precision="half").validate()


def test_runtime_on_this_host(no_cuda):
    rt = dv.runtime(TrainConfig())
    assert rt.device.type == "cpu" and rt.scaler() is None and rt.peak_memory_gib() is None
    assert rt.teacher_batch == dv.TEACHER_BATCH["cpu"]
    with rt.autocast():
        assert not torch.is_autocast_enabled("cpu")
    with dv.runtime(TrainConfig(precision="bf16")).autocast():
        assert (torch.nn.Linear(4, 4)(torch.ones(1, 4))).dtype == torch.bfloat16
    with pytest.raises(RecipeError, match="fp16"):
        dv.runtime(TrainConfig(precision="fp16"))


def test_cpu_bf16_units_from_cpuinfo():
    info = "processor\t: 0\nflags\t\t: fpu avx512f amx_tile amx_bf16 avx512_bf16 sse\nvmx flags\t: amx_int8\n"
    assert dv.cpu_bf16_units(info) == ["amx_bf16", "avx512_bf16"]
    assert dv.cpu_bf16_units("processor\t: 0\nflags\t\t: fpu avx2\n") == []
    assert dv.cpu_bf16_units("processor\t: 0\nFeatures\t: fp asimd bf16\n") is None  # not x86: nothing known


@pytest.mark.parametrize("units,precision,warned", [([], "bf16", True), (["amx_bf16"], "bf16", False),
                                                    (None, "bf16", False), ([], "fp32", False)])
def test_bf16_on_a_cpu_without_bf16_units_is_warned_once(no_cuda, monkeypatch, capsys, units, precision, warned):
    monkeypatch.setattr(dv, "cpu_bf16_units", lambda: units)
    monkeypatch.setattr(dv, "_warned", set())
    spec = LLMDistillSpec(precision=precision)
    dv.runtime(spec), dv.runtime(spec)
    err = capsys.readouterr().err
    assert err.count("without bf16 units") == (1 if warned else 0)
    if warned:
        assert "[distill] precision" in err and 'use precision = "fp32"' in err


def test_to_device_walks_batches_and_keeps_other_values():
    feats = {"input_ids": torch.ones(2, 3, dtype=torch.long), "n": 3}
    out = Outputs(embedding=torch.zeros(2, 4), hidden={1: torch.ones(2, 3, 4)}, mask=None)
    moved = dv.to_device({"feats": feats, "teacher": out, "pair": (torch.ones(1), [torch.zeros(1)])},
                         torch.device("cpu"))
    assert moved["feats"]["n"] == 3 and moved["feats"]["input_ids"] is feats["input_ids"]  # CPU -> CPU is free
    assert isinstance(moved["teacher"], Outputs) and moved["teacher"].hidden[1].shape == (2, 3, 4)
    assert moved["teacher"].mask is None and isinstance(moved["pair"][1], list)


def test_chunked_teacher_topk_equals_one_pass():
    model = tiny_llama(layers=2)
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 30, size=(3, 10)))
    one_v, one_i = teacher_topk(model, ids, k=5, chunk=10_000)
    for chunk in (7, 16):  # chunks that split rows and that do not
        v, i = teacher_topk(model, ids, k=5, chunk=chunk)
        assert v.shape == one_v.shape == (3, 10, 5) and v.dtype == torch.float16 and i.dtype == torch.int32
        assert torch.allclose(v.float(), one_v.float(), atol=2e-3) and torch.equal(i, one_i)


def test_checkpoints_are_written_and_read_on_the_cpu(tmp_path):
    store = GenerationStore(tmp_path / "gen-1", every=1)
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters())
    lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    store.save(1, lin.state_dict(), lin.state_dict(), {}, {"optimizer": opt.state_dict(), "torch_rng":
                                                           torch.get_rng_state()}, {"step": 1})
    ck = store.latest()
    tensors = [*ck["weights"].values(), *ck["best"].values(), ck["torch"]["torch_rng"],
               *[t for st in ck["torch"]["optimizer"]["state"].values() for t in st.values()
                 if isinstance(t, torch.Tensor)]]
    assert tensors and all(t.device.type == "cpu" for t in tensors)


def test_llm_training_logs_every_step_with_null_gpu_memory_on_the_cpu(tmp_path, no_cuda):
    from edgedistill.llm.topk_cache import build_topk_cache

    teacher, student = tiny_llama(layers=2, seed=0), tiny_llama(layers=1, seed=1)
    blocks = np.random.default_rng(0).integers(0, 30, size=(8, 12)).astype(np.int32)
    topk = build_topk_cache(teacher, blocks, teacher_sha="b" * 64, tokenizer_sha="t", k=4, root=tmp_path)
    cfg = TrainConfig(mode="kd", max_steps=3, batch_size=2, eval_every=3, warmup_steps=1)
    student, res = train_causal(student, blocks, blocks[:2], cfg, topk=topk, log_path=tmp_path / "log.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r.get("peak_gpu_gib") is None for r in rows)
    assert all(np.isfinite(r["kd"]) and r["tokens"] == 24 for r in rows)
    assert next(student.parameters()).device.type == "cpu" and "peak_gpu_gib" not in res.history[-1]


def test_throughput_benchmark_and_gpu_check_are_runnable():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "train_throughput.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--data-dir" in proc.stdout and "--quick" in proc.stdout
    assert subprocess.run(["bash", "-n", str(root / "benchmarks" / "gpu_check.sh")]).returncode == 0


def test_cuda_asked_for_on_a_cpu_host_stops_before_any_work(tmp_path, tiny_teacher, capsys, no_cuda):
    from edgedistill.cli import main

    data = write_jsonl(tmp_path / "rows.jsonl", synthetic_rows(60))
    path = tiny_recipe(tmp_path, tiny_teacher, data, distill={"device": "cuda", "max_steps": 2})
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "key 'device'" in err and "no CUDA GPU" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "student").exists()


def test_the_default_says_nothing_on_a_cpu_host_and_an_explicit_device_is_announced(tmp_path, tiny_teacher, capsys,
                                                                                     no_cuda):
    from edgedistill.cli import main

    data = write_jsonl(tmp_path / "rows.jsonl", synthetic_rows(60))
    for name, extra in (("auto", {}), ("cpu", {"device": "cpu", "precision": "bf16"})):
        (tmp_path / name).mkdir()
        path = tiny_recipe(tmp_path / name, tiny_teacher, data, distill={"max_steps": 2, "eval_every": 2, **extra})
        assert main(["distill", str(path), "-o", str(tmp_path / name / "out")]) == 0
        err = capsys.readouterr().err
        assert ("device cpu, precision bf16" in err) == (name == "cpu")
        rows = [json.loads(x) for x in (tmp_path / name / "out" / "train_log.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all("peak_gpu_gib" not in r for r in rows)  # the CPU log is as it was


class _Crash(Exception):
    pass


def test_the_fp16_scaler_path_of_the_shared_loop_runs_and_resumes(tmp_path, clf_teacher, monkeypatch, capsys):
    """The GPU's fp16 path (autocast + GradScaler, its state in checkpoints) exercised on the CPU, where torch
    has both; the recipe check that refuses fp16 on a CPU is bypassed for the loop only."""
    from edgedistill.cli import main
    from edgedistill.distill import loop

    monkeypatch.setattr(loop, "runtime", lambda spec: dv.Runtime(torch.device("cpu"), "fp16"))
    data = write_jsonl(tmp_path / "rows.jsonl", synthetic_rows(80))
    path = tiny_recipe(tmp_path, clf_teacher, data, distill={
        "strategy": "classification", "losses": {"kd": 1.0, "hard_ce": 0.5}, "max_steps": 6, "eval_every": 3,
        "checkpoint_every": 3, "batch_size": 8, "learning_rate": 3e-3, "eval_sentences": 12})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["distill", str(path), "-o", str(tmp_path / "ref")]) == 0
    # fp16's first steps overflow at the initial scale and are skipped; the schedule waits for them
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    ref = [json.loads(x) for x in (tmp_path / "ref" / "train_log.jsonl").read_text().splitlines()]
    assert len(ref) == 6 and all(np.isfinite(r["loss"]) for r in ref)
    assert ref[0]["lr"] == ref[1]["lr"]  # step 1 was skipped: step 2 runs at the same point of the schedule

    orig, seen = loop._save, {}

    def crash_after_saving(store, step, *a, **kw):
        orig(store, step, *a, **kw)
        seen[step] = store.latest()["torch"]
        raise _Crash  # the run dies right after its step-3 checkpoint

    monkeypatch.setattr(loop, "_save", crash_after_saving)
    try:
        assert main(["distill", str(path), "-o", str(tmp_path / "out")]) != 0
    except _Crash:
        pass
    assert seen[3]["grad_scaler"]["scale"] > 0  # the scaler's state travels with the checkpoint
    monkeypatch.setattr(loop, "_save", orig)
    capsys.readouterr()
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) == 0
    assert "resuming from step 3" in capsys.readouterr().err
    rows = [json.loads(x) for x in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in ref], abs=1e-6)


@pytest.mark.parametrize("mode", ["kd", "on_policy"])
def test_the_fp16_scaler_path_of_the_llm_trainer_runs(tmp_path, monkeypatch, mode):
    from edgedistill.llm import train as llm_train
    from edgedistill.llm.topk_cache import build_topk_cache

    monkeypatch.setattr(llm_train, "runtime", lambda cfg: dv.Runtime(torch.device("cpu"), "fp16"))
    teacher, student = tiny_llama(layers=2, seed=0), tiny_llama(layers=1, seed=1)
    blocks = np.random.default_rng(0).integers(0, 30, size=(8, 12)).astype(np.int32)
    topk = build_topk_cache(teacher, blocks, teacher_sha="e" * 64, tokenizer_sha="t", k=4, root=tmp_path)
    cfg = TrainConfig(mode=mode, max_steps=3, batch_size=2, eval_every=3, warmup_steps=1, ce_weight=0.5,
                      gen_tokens=3, prompt_tokens=3)
    _, res = train_causal(student, blocks, blocks[:2], cfg, topk=topk, teacher=teacher,
                          prompts=[blocks[0, :3].tolist()], top_k=4, log_path=tmp_path / "log.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(np.isfinite(r["loss"]) for r in rows) and np.isfinite(res.best_val["ppl"])
