"""Data parallelism under Accelerate: 2 CPU processes on gloo, on one "node" or on two rendezvousing
"nodes", train the same student as one process."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import synthetic_rows, tiny_recipe, write_jsonl
from safetensors.torch import load_file

from edgedistill.cli import main
from edgedistill.distill.parallel import Parallel
from edgedistill.models.classifier import classifier_from_encoder
from edgedistill.models.loading import load_encoder

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))


def test_each_process_takes_a_contiguous_slice_of_the_global_batch():
    idx = list(range(7))
    parts = [Parallel(rank=r, world=2).slice(idx) for r in range(2)]
    assert parts == [[0, 1, 2], [3, 4, 5, 6]] and Parallel().slice(idx) is idx


@pytest.fixture(scope="module")
def one_run(tmp_path_factory, tiny_teacher):
    """The tiny classification recipe trained by one plain process: the reference for every launch below."""
    tmp_path = tmp_path_factory.mktemp("parallel")
    enc, tok = load_encoder(tiny_teacher)
    torch.manual_seed(0)
    model = classifier_from_encoder(enc)  # the tiny BERT has no dropout
    with torch.no_grad():
        model.classifier.weight.mul_(50)
    model.save_pretrained(tmp_path / "teacher", safe_serialization=True)
    tok.save_pretrained(tmp_path / "teacher")
    data = write_jsonl(tmp_path / "rows.jsonl", synthetic_rows(120))
    # device = "cpu": the launches below are CPU/gloo processes even on a GPU host
    path = tiny_recipe(tmp_path, tmp_path / "teacher", data, distill={
        "strategy": "classification", "losses": {"kd": 1.0, "hard_ce": 0.5}, "max_steps": 8, "eval_every": 4,
        "batch_size": 16, "learning_rate": 1e-2, "threads": 1, "eval_sentences": 12, "device": "cpu"})
    assert main(["distill", str(path), "-o", str(tmp_path / "one")]) == 0
    return tmp_path, path


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", EDGEDISTILL_DEVICE="cpu")


def test_two_processes_match_one(one_run):
    tmp_path, path = one_run
    proc = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "edgedistill.cli",
                           "distill", str(path), "-o", str(tmp_path / "two")],
                          capture_output=True, text=True, env=_env(), timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same(tmp_path / "one", tmp_path / "two")


def test_two_nodes_match_one(one_run):
    """Multi-node for real on one machine: two torchrun "nodes" (one process each) rendezvous on 127.0.0.1."""
    tmp_path, path = one_run
    port = _free_port()
    nodes = [subprocess.Popen([TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
                               "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "edgedistill.cli",
                               "distill", str(path), "-o", str(tmp_path / "nodes")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for rank in (0, 1)]
    errors = []
    for node in nodes:
        try:
            _, err = node.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            node.kill()
            _, err = node.communicate()
        errors.append((node.returncode, err[-3000:]))
    assert all(rc == 0 for rc, _ in errors), errors
    _assert_same(tmp_path / "one", tmp_path / "nodes")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_same(one_dir: Path, other_dir: Path) -> None:
    one = load_file(one_dir / "student" / "model.safetensors")
    two = load_file(other_dir / "student" / "model.safetensors")
    # same global batches; only the summation order of the gradients differs: every step's loss
    # (which depends on all earlier updates) and the kept weights agree within 1e-4
    log1, log2 = (_log(d / "train_log.jsonl") for d in (one_dir, other_dir))
    assert len(log2) == 8  # only the main process logs
    assert [r["loss"] for r in log2] == pytest.approx([r["loss"] for r in log1], abs=1e-4)
    assert len({round(r["loss"], 6) for r in log1}) == 8
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-4, rtol=0), (k, (one[k] - two[k]).abs().max())


def _log(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


if not TORCHRUN or not Path(TORCHRUN).exists():
    test_two_processes_match_one = pytest.mark.skip("torchrun not installed")(test_two_processes_match_one)
    test_two_nodes_match_one = pytest.mark.skip("torchrun not installed")(test_two_nodes_match_one)
