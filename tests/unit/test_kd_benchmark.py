"""benchmarks/kd_methods.py on a tiny budget: the result contract is written and consistent."""

import json
from pathlib import Path

from conftest import classifier_teacher, load_benchmark, synthetic_rows, write_jsonl

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kd_methods.py"


def _load():
    return load_benchmark("kd_methods")


def _tiny_teacher(tmp_path, tiny_teacher):
    classifier_teacher(tiny_teacher, tmp_path / "teacher", scale=1.0)
    (tmp_path / "teacher" / "teacher.json").write_text(json.dumps(
        {"train": {"unfreeze_layers": 0}, "val_accuracy": 0.5, "test_accuracy": 0.5, "best_epoch": 1, "seconds": 0}))
    return write_jsonl(tmp_path / "rows.jsonl", synthetic_rows(160))


def test_tiny_benchmark_writes_the_headline(tmp_path, tiny_teacher):
    data = _tiny_teacher(tmp_path, tiny_teacher)
    mod = _load()
    out = tmp_path / "res" / "kd_methods"
    assert mod.main(["--teacher", str(tmp_path / "teacher"), "--jsonl", str(data), "--layers", "0", "3", "--ffn", "32",
                     "--steps", "4", "--seeds", "0", "1", "--threads", "1",
                     "--methods", "hard_label", "kd", "born_again", "fitnets",
                     "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    h = res["headline"]
    assert h["methods_benchmarked"] == ["hard_label", "kd", "born_again", "fitnets"]
    assert h["best_method"] in ("kd", "born_again", "fitnets")
    assert h["best_acc"] == res["methods"][h["best_method"]]["test_accuracy_mean"]
    assert h["hard_label_acc"] == res["methods"]["hard_label"]["test_accuracy_mean"]
    assert h["seed_spread"] == max(res["methods"]["hard_label"]["test_accuracy_std"],
                                   res["methods"][h["best_method"]]["test_accuracy_std"])
    assert [r["seed"] for r in res["methods"]["kd"]["per_seed"]] == [0, 1]
    assert 0 <= res["untrained_student"]["test_accuracy"] <= 1
    md = out.with_suffix(".md").read_text()
    assert "| untrained student |" in md and "| born_again |" in md


def test_reuse_reads_back_finished_runs_and_trains_only_new_ones(tmp_path, tiny_teacher):
    data = _tiny_teacher(tmp_path, tiny_teacher)
    mod = _load()
    common = ["--teacher", str(tmp_path / "teacher"), "--jsonl", str(data), "--layers", "0", "3", "--ffn", "32",
              "--steps", "3", "--seeds", "0", "--threads", "1", "--reuse", str(tmp_path / "done")]
    assert mod.main([*common, "--methods", "hard_label", "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a.json").read_text())["methods"]["hard_label"]["per_seed"][0]
    assert len(list((tmp_path / "done").glob("hard_label-seed0-*.json"))) == 1
    calls = []
    real = mod._train_one
    mod._train_one = lambda *a: calls.append(a[2]) or real(*a)
    assert mod.main([*common, "--methods", "hard_label", "kd", "--out", str(tmp_path / "b")]) == 0
    assert calls == ["kd"]  # hard_label came back from disk
    again = json.loads((tmp_path / "b.json").read_text())["methods"]["hard_label"]["per_seed"][0]
    assert again == first
    # A different budget is a different run: nothing is reused.
    calls.clear()
    common[common.index("--steps") + 1] = "2"
    assert mod.main([*common, "--methods", "hard_label", "--out", str(tmp_path / "c")]) == 0
    assert calls == ["hard_label"]
