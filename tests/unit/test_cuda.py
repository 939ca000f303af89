"""The GPU side of [distill] device / precision, run on a CUDA host (``pytest -m cuda tests/unit/test_cuda.py``;
benchmarks/gpu_check.sh runs it). Everything here is skipped, with the reason, where torch sees no GPU.

Needs only torch, transformers, accelerate, safetensors, tokenizers and the tiny test models: no
executorch, no gguf, no teacher wheels, no network.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_rows, tiny_recipe, write_jsonl
from llm_tiny import tiny_llama
from safetensors.torch import load_file

from edgedistill.cli import main

REPO = Path(__file__).resolve().parents[2]
HAS_CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not HAS_CUDA, reason=f"no CUDA GPU visible to torch {torch.__version__} (CUDA build {torch.version.cuda})")]
PRECISIONS = ["bf16", "fp16"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("cuda-data") / "rows.jsonl", synthetic_rows(120))


def _log(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _check_gpu_run(out: Path, steps: int, err: str) -> list[dict]:
    assert "device cuda" in err, err[-2000:]  # the run says where it trains
    log = _log(out / "train_log.jsonl")
    assert len(log) == steps and all(np.isfinite(r["loss"]) for r in log)
    assert all(r["peak_gpu_gib"] > 0 for r in log)  # peak memory recorded per step
    return log


@pytest.mark.parametrize("precision", PRECISIONS)
def test_embedding_distill_on_cuda(tmp_path, tiny_teacher, rows, precision, capsys):
    path = tiny_recipe(tmp_path, tiny_teacher, rows, distill={
        "device": "cuda", "precision": precision, "max_steps": 12, "eval_every": 6, "batch_size": 16,
        "learning_rate": 1e-3, "losses": {"cosine": 1.0, "hidden_mse": 1.0}})
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) == 0
    _check_gpu_run(tmp_path / "out", 12, capsys.readouterr().err)
    rec = json.loads((tmp_path / "out" / "student" / "distill.json").read_text())
    assert 0 < rec["metrics"]["best_val_cosine"] <= 1


CLS_CASES = {
    "classification": {"losses": {"kd": 1.0, "hard_ce": 0.5}},
    "fitnets": {"losses": {"kd": 1.0, "fitnets": 1.0}},
    "ema_self": {"strategy": "ema_self", "losses": {"kd": 1.0, "hard_ce": 1.0}},
    "mutual": {"strategy": "mutual", "losses": {"kd": 1.0, "hard_ce": 1.0}},
}


CLS_RUNS = [(case, p) for case in sorted(CLS_CASES) for p in PRECISIONS if p == "bf16" or case in ("classification",
                                                                                                   "fitnets")]


@pytest.mark.parametrize(("case", "precision"), CLS_RUNS)
def test_classification_distill_on_cuda(tmp_path, clf_teacher, rows, case, precision, capsys):
    distill = {"strategy": "classification", "device": "cuda", "precision": precision, "max_steps": 10,
               "eval_every": 5, "batch_size": 16, "learning_rate": 3e-3, "eval_sentences": 12, **CLS_CASES[case]}
    path = tiny_recipe(tmp_path, clf_teacher, rows, distill=distill)
    assert main(["distill", str(path), "-o", str(tmp_path / "out")]) == 0
    _check_gpu_run(tmp_path / "out", 10, capsys.readouterr().err)
    student = load_file(tmp_path / "out" / "student" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in student.values())


def test_checkpoint_written_on_cuda_resumes_on_the_cpu(tmp_path, clf_teacher, rows, capsys):
    distill = {"strategy": "ema_self", "losses": {"kd": 1.0, "hard_ce": 1.0}, "ema_decay": 0.8, "max_steps": 10,
               "eval_every": 5, "checkpoint_every": 5, "batch_size": 8, "learning_rate": 3e-3, "eval_sentences": 12,
               "threads": 1}
    (tmp_path / "ref").mkdir()
    ref = tiny_recipe(tmp_path / "ref", clf_teacher, rows, distill={**distill, "device": "cpu"})
    assert main(["distill", str(ref), "-o", str(tmp_path / "ref" / "out")]) == 0
    (tmp_path / "gpu").mkdir()
    out = tmp_path / "gpu" / "out"
    on_gpu = tiny_recipe(tmp_path / "gpu", clf_teacher, rows, distill={**distill, "device": "cuda"})
    env = dict(os.environ, PYTHONPATH=str(REPO), EDGEDISTILL_TEST_EXIT_AFTER_STEPS="7")
    proc = subprocess.run([sys.executable, "-m", "edgedistill.cli", "distill", str(on_gpu), "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 75, proc.stderr[-3000:]  # killed after step 7, its step-5 checkpoint on disk
    ckpt = next((out / "checkpoints").glob("gen-1/step-*"))
    state = torch.load(ckpt / "optim.pt", map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for st in state["optimizer"]["state"].values() for t in st.values()
               if isinstance(t, torch.Tensor))
    # the same recipe, now on the CPU: device is not part of the checkpoint fingerprint
    on_cpu = tiny_recipe(tmp_path / "gpu", clf_teacher, rows, distill={**distill, "device": "cpu"})
    capsys.readouterr()
    assert main(["distill", str(on_cpu), "-o", str(out)]) == 0
    assert "resuming from step 5" in capsys.readouterr().err
    a = load_file(tmp_path / "ref" / "out" / "student" / "model.safetensors")
    b = load_file(out / "student" / "model.safetensors")
    for k in a:  # 5 steps on the GPU, 5 on the CPU vs 10 on the CPU: float tolerance, not bit equality
        assert torch.allclose(a[k], b[k], atol=1e-3, rtol=0), (k, (a[k] - b[k]).abs().max())
    la, lb = _log(tmp_path / "ref" / "out" / "train_log.jsonl"), _log(out / "train_log.jsonl")
    assert [r["loss"] for r in lb] == pytest.approx([r["loss"] for r in la], abs=1e-3)


def _kd_setup(tmp_path, vocab=None, hidden=32, layers=(4, 2), n_blocks=8, block=16):
    from edgedistill.llm.topk_cache import build_topk_cache

    teacher, student = tiny_llama(layers=layers[0], hidden=hidden, seed=0), tiny_llama(layers=layers[1], hidden=hidden,
                                                                                        seed=1)
    if vocab is not None:
        for m in (teacher, student):
            m.resize_token_embeddings(vocab)
            m.config.max_position_embeddings = max(m.config.max_position_embeddings, block)
    v = teacher.config.vocab_size
    blocks = np.random.default_rng(0).integers(0, v, size=(n_blocks, block)).astype(np.int32)
    topk = build_topk_cache(teacher.cuda(), blocks, teacher_sha="c" * 64, tokenizer_sha="t", k=8,
                            root=tmp_path / "topk")
    return teacher, student, blocks, topk


@pytest.mark.parametrize(("mode", "precision"), [("kd", "fp32"), ("kd", "bf16"), ("kd", "fp16"), ("on_policy", "bf16")])
def test_llm_kd_on_cuda(tmp_path, mode, precision):
    from edgedistill.llm.train import TrainConfig, train_causal

    teacher, student, blocks, topk = _kd_setup(tmp_path)
    cfg = TrainConfig(mode=mode, device="cuda", precision=precision, max_steps=6, batch_size=4, eval_every=3,
                      warmup_steps=1, ce_weight=0.5, gen_tokens=4, prompt_tokens=4)
    prompts = [blocks[i, :4].tolist() for i in range(4)]
    student, res = train_causal(student, blocks, blocks[:2], cfg, topk=topk, teacher=teacher, prompts=prompts,
                                top_k=8, log_path=tmp_path / "log.jsonl")
    rows = _log(tmp_path / "log.jsonl")
    assert len(rows) == 6 and all(np.isfinite(r["loss"]) and r["peak_gpu_gib"] > 0 for r in rows)
    assert next(student.parameters()).device.type == "cpu"  # handed back on the CPU
    assert np.isfinite(res.best_val["ppl"]) and res.tokens_per_s > 0


def test_topk_cache_filled_on_cuda_is_the_cpu_cache(tmp_path):
    from edgedistill.llm.topk_cache import build_topk_cache

    model = tiny_llama(layers=2)
    blocks = np.random.default_rng(1).integers(0, 30, size=(6, 12)).astype(np.int32)
    kw = dict(teacher_sha="d" * 64, tokenizer_sha="t", k=4, shard_blocks=4)
    gpu = build_topk_cache(model.cuda(), blocks, root=tmp_path / "a", **kw)
    cpu = build_topk_cache(model.cpu(), blocks, root=tmp_path / "b", **kw)
    assert gpu.folder.name == cpu.folder.name and np.array_equal(gpu.idx, cpu.idx)
    assert np.allclose(gpu.logp.astype(np.float32), cpu.logp.astype(np.float32), atol=2e-2)
    reused = build_topk_cache(model.cpu(), blocks, root=tmp_path / "a", **kw)
    assert reused.computed_shards == 0  # a GPU-filled cache is reused on the CPU


def test_chunked_kd_peak_memory_is_bounded(tmp_path):
    """A 32 x 512 batch over a 49k vocabulary: full fp32 logits would be 3.2 GB for the student alone (and the
    same again for the teacher); the chunked top-k and loss keep the step well under one copy."""
    from edgedistill.llm.topk_cache import teacher_topk
    from edgedistill.llm.train import TrainConfig, train_causal

    vocab, b, t = 49152, 32, 512
    full_logits_gib = b * t * vocab * 4 / 2**30
    teacher, student, blocks, topk = _kd_setup(tmp_path, vocab=vocab, hidden=64, layers=(2, 1), n_blocks=b, block=t)
    torch.cuda.reset_peak_memory_stats()
    teacher_topk(teacher.cuda(), torch.from_numpy(blocks.astype(np.int64)), k=32)
    teacher_peak = torch.cuda.max_memory_allocated() / 2**30
    cfg = TrainConfig(mode="kd", device="cuda", precision="bf16", max_steps=2, batch_size=b, eval_every=2,
                      warmup_steps=1, ce_weight=0.5, chunk=512)
    _, res = train_causal(student, blocks, blocks[:2], cfg, topk=topk, log_path=tmp_path / "log.jsonl")
    peaks = [r["peak_gpu_gib"] for r in _log(tmp_path / "log.jsonl")]
    assert teacher_peak < 0.5 * full_logits_gib, teacher_peak
    assert max(peaks) < 0.5 * full_logits_gib, peaks


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs (one process per GPU under NCCL)")
def test_two_processes_on_two_gpus_match_one(tmp_path, clf_teacher, rows):
    import shutil

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    path = tiny_recipe(tmp_path, clf_teacher, rows, distill={
        "strategy": "classification", "losses": {"kd": 1.0, "hard_ce": 0.5}, "max_steps": 8, "eval_every": 4,
        "batch_size": 16, "learning_rate": 1e-2, "eval_sentences": 12, "device": "cuda"})
    assert main(["distill", str(path), "-o", str(tmp_path / "one")]) == 0
    env = {k: v for k, v in os.environ.items() if k != "EDGEDISTILL_DEVICE"} | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "edgedistill.cli", "distill",
                           str(path), "-o", str(tmp_path / "two")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    la, lb = _log(tmp_path / "one" / "train_log.jsonl"), _log(tmp_path / "two" / "train_log.jsonl")
    assert [r["loss"] for r in lb] == pytest.approx([r["loss"] for r in la], abs=1e-3)
