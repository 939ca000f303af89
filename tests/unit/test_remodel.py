"""benchmarks/remodel.py: stored reports get modelled-v2 device figures, measured numbers untouched, shapes checked."""

import json
import sys
from dataclasses import replace
from pathlib import Path

from conftest import load_benchmark

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load():
    sys.path.insert(0, str(BENCH))
    return load_benchmark("remodel")


def _report(tmp_path, student_shape):
    """The stored headline report as a template (its measured entries), the student's counts replaced."""
    from edgedistill.measure.macs import count

    r = json.loads((BENCH / "results" / "headline.json").read_text())
    r.pop("remodelled", None)
    r["energy"]["energy_kind"] = r["headline"]["energy_kind"] = "modelled-v1"
    student = next(m for m in r["models"] if m["name"] == r["headline"]["student"]["name"])
    c = count(student_shape, r["settings"]["batch_size"], r["settings"]["seq_length"], student["quantization"])
    student.update(params=c["params"], macs=c["macs"], macs_by_layer_class=c["macs_by_layer_class"])
    path = tmp_path / "r.json"
    path.write_text(json.dumps(r))
    return path, r


def test_encoder_report_is_remodelled_with_shapes_checked(tmp_path):
    mod = _load()
    from device_model import MINILM_L6

    path, before = _report(tmp_path, replace(MINILM_L6, layers=2, ffn=768))  # FFN-pruned cuts are recognised
    assert mod.main([str(path)]) == 0
    out = json.loads(path.read_text())
    by = {m["name"]: m for m in out["models"]}
    student = by[out["headline"]["student"]["name"]]
    assert student["energy_shape"] == "all-MiniLM-L6-v2, 2 of 6 blocks, FFN 768"
    assert student["energy"]["phone"]["energy_kind"] == "modelled-v2"
    for m, old in zip(out["models"], before["models"], strict=True):
        assert m["latency"] == old["latency"] and m["quality"] == old["quality"]  # measured numbers untouched
        assert ("energy" in m and bool(m["energy"])) == ("energy" in old and bool(old["energy"]))
    h = out["headline"]
    assert h["energy_kind"] == "modelled-v2" and h["energy_ratio"]["phone"]["central"] > 1
    assert h["latency_p50_speedup"] == before["headline"]["latency_p50_speedup"]
    assert out["energy"]["energy_kind"] == "modelled-v2" and out["remodelled"]["energy_kind_before"] == "modelled-v1"
    assert "re-modelled (modelled-v2, was modelled-v1)" in path.with_suffix(".md").read_text()


def test_counts_that_match_no_family_are_refused_and_nothing_is_written(tmp_path, capsys):
    mod = _load()
    from device_model import MINILM_L6

    path, _ = _report(tmp_path, replace(MINILM_L6, layers=2, hidden=320))
    before = path.read_text()
    assert mod.main([str(path)]) == 2
    assert "match no known encoder family" in capsys.readouterr().err
    assert path.read_text() == before and not path.with_suffix(".md").exists()


def _llm_result():
    from device_model import SMOLLM2_135M

    from edgedistill.measure.workload import INT4_G32

    def pte(layers):
        s = replace(SMOLLM2_135M, layers=layers)
        return (s.linear_params + s.vocab * s.hidden) * INT4_G32 + s.vocab * s.hidden

    rows = ["| model | scheme | size MB | threads | prefill tok/s | decode tok/s | first token ms | peak RSS MB "
            "(over runtime) | energy mJ/token (modelled, lo-hi) |", "|---|---|---|---|---|---|---|---|---|",
            "| student-8da4w | 8da4w | 74.8 | 1 | 484.4 | 38.1 | 132.1 | 610 (239) | 117 (81-1.9e+02, phone) |",
            "| teacher-8da4w | 8da4w | 105.2 | 1 | 256.7 | 19.6 | 249.3 | 662 (291) | 226 (1.6e+02-3.7e+02, phone) |",
            "", "student-8da4w vs teacher-8da4w: 1.41x fewer bytes, decode 1.95x at 1 thr."]
    return {"runs": [{"method": "kd", "seed": 0, "layers": list(range(15)), "ppl_before": 1.0, "ppl_after": 1.0,
                      "agreement": 0.5, "steps": 1, "train_seconds": 1, "tokens_per_s": 1}],
            "smoke": False, "host": "x", "headline": {"budget": {}}, "generations": [],
            "export": {"teacher_pte_bytes": pte(30), "student_pte_bytes": pte(15), "teacher_fp32_bytes": 1,
                       "prompt_tokens": 64, "decode_tokens": 32, "cache_len": 512, "repeats": 3,
                       "bench_table": "\n".join(rows)}}


def test_llm_result_gets_v2_energy_and_keeps_its_measured_columns(tmp_path):
    mod = _load()
    path = tmp_path / "llm.json"
    path.write_text(json.dumps(_llm_result()))
    assert mod.main([str(path)]) == 0
    e = json.loads(path.read_text())["export"]
    assert e["energy_kind"] == "modelled-v2"
    table = e["bench_table"]
    assert "| student-8da4w | 8da4w | 74.8 | 1 | 484.4 | 38.1 | 132.1 | 610 (239) | 117 " not in table
    assert "| student-8da4w | 8da4w | 74.8 | 1 | 484.4 | 38.1 | 132.1 | 610 (239) | " in table
    assert "decode 1.95x at 1 thr" in table and "| teacher-8da4w | phone |" in table
    assert e["energy_per_token"]["student-8da4w"]["phone"]["bound"]["central"] == "memory"
    assert "re-modelled (modelled-v2, was modelled-v1)" in path.with_suffix(".md").read_text()
    assert mod.main([str(path)]) == 0  # a second pass rebuilds the device table instead of adding another
    assert json.loads(path.read_text())["export"]["bench_table"].count("Modelled on the device") == 1


def test_llm_shape_that_does_not_match_the_pte_is_refused(tmp_path, capsys):
    mod = _load()
    res = _llm_result()
    res["export"]["student_pte_bytes"] *= 1.2
    path = tmp_path / "llm.json"
    path.write_text(json.dumps(res))
    assert mod.main([str(path)]) == 2
    assert "does not match" in capsys.readouterr().err
    assert json.loads(path.read_text()) == res


def _classifier(tmp_path, student_size_delta=0):
    res = json.loads((BENCH / "results" / "classifier.json").read_text())
    res.pop("remodelled", None)
    for task, t in res["tasks"].items():
        b = t["bench"]
        rep = {"created": "2026-12-05T00:00:00Z",
               "models": [{"name": "teacher-pytorch", "size_bytes": b["teacher"]["size_bytes"]},
                          {"name": "student-onnx-int8", "size_bytes": b["student"]["size_bytes"] + student_size_delta}],
               "headline": {"energy_kind": "modelled-v2",
                            "energy_ratio": {"phone": {"lo": 1, "central": 2, "hi": 3, "energy_kind": "modelled-v2"}}}}
        t["report"] = str(tmp_path / f"{task}.json")
        (tmp_path / f"{task}.json").write_text(json.dumps(rep))
    path = tmp_path / "classifier.json"
    path.write_text(json.dumps(res))
    return path, res


def test_classifier_ratios_come_from_v2_reports_of_the_same_models(tmp_path):
    mod = _load()
    path, before = _classifier(tmp_path)
    assert mod.main([str(path)]) == 0
    out = json.loads(path.read_text())
    for task, t in out["tasks"].items():
        assert t["bench"]["energy_ratio"] == {"phone": {"lo": 1, "central": 2, "hi": 3, "energy_kind": "modelled-v2"}}
        old = before["tasks"][task]["bench"]
        assert t["bench"]["latency_p50_speedup"] == old["latency_p50_speedup"]  # measured numbers untouched
    assert out["headline"] == before["headline"] and out["remodelled"]["energy_kind"] == "modelled-v2"
    assert path.with_suffix(".md").read_text().startswith("# Classifiers to devices")


def test_classifier_report_of_other_models_is_refused(tmp_path, capsys):
    mod = _load()
    path, before = _classifier(tmp_path, student_size_delta=1)
    assert mod.main([str(path)]) == 2
    assert "same models" in capsys.readouterr().err
    assert json.loads(path.read_text()) == before
