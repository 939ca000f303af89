"""Re-model the device figures of stored benchmark results with the current device model, keeping every
measured number.

    PYTHONPATH=$PWD python benchmarks/remodel.py benchmarks/results/headline.json benchmarks/results/llm.json
    PYTHONPATH=$PWD python benchmarks/remodel.py benchmarks/results/classifier.json   # after a --reuse re-run

For results measured before ``modelled-v2`` whose models are gone from this machine, so that a real re-run
would mean distilling again (the headline: ~30 min of training; the LLM benchmark: ~2 h). ``modelled-v2``
reads no host measurement: a device figure is a function of the model's shape and scheme and the target
file only, so re-modelling writes exactly what a re-run would write in those columns, and nothing else
changes. Shapes come from the report itself and are checked, never guessed:

* an encoder entry's hidden size, depth and FFN width are matched against the published configs of the
  project's encoder families (all-MiniLM-L6-v2, all-mpnet-base-v2, and blocks cut from them) by the MACs
  per layer class and the parameter count the report stored; both must agree exactly, or the entry is
  refused. Entries the original run could not model stay unmodelled, as a re-run would leave them;
* an LLM's from the SmolLM2 teacher's config and the student's layer list in the report; the modelled
  bytes must be within 5% of the measured ``.pte`` sizes;
* classifier.json stores only each task's energy ratio: it is taken from the task's bench report once a
  ``--reuse`` re-run has rewritten that report in ``modelled-v2`` from the very same model files (sizes
  checked), for when that re-run's timings were too noisy to replace the stored ones.

Every re-modelled file says so (``remodelled``: when, by what, from which energy kind) in its JSON and
markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from edgedistill.errors import DataError  # noqa: E402
from edgedistill.fileutil import write_json_atomic, write_text_atomic  # noqa: E402
from edgedistill.measure.device_model import NOTE as ENERGY_NOTE, annotate, energy_ratios  # noqa: E402
from edgedistill.measure.energy import ENERGY_KIND  # noqa: E402
from edgedistill.measure.macs import count  # noqa: E402
from edgedistill.measure.workload import decode_workload, precision_for_scheme  # noqa: E402
from edgedistill.targets import load_target  # noqa: E402

BYTES_TOLERANCE = 0.05


def _stamp(before: str | None) -> dict:
    return {"energy_kind_before": before, "energy_kind": ENERGY_KIND, "by": "benchmarks/remodel.py",
            "on": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "note": "device latency and energy re-modelled from the stored model shapes and schemes; every measured "
                    "number (host latency, RSS, sizes, quality) is the original run's"}


def encoder_shape(m: dict, batch: int, seq: int):
    """The published family shape (depth and FFN width free) whose counts equal the entry's stored ones."""
    from device_model import MINILM_L6, MPNET_BASE

    want = m.get("macs_by_layer_class")
    if not want:
        return None, None
    for family, base in (("all-MiniLM-L6-v2", MINILM_L6), ("all-mpnet-base-v2", MPNET_BASE)):
        for layers in range(1, base.layers + 1):
            # FFN MACs = tokens x layers x 2 x hidden x ffn: a pruned FFN is read off the stored count
            ffn, rest = divmod(want["ffn"], batch * seq * layers * 2 * base.hidden)
            if rest or ffn < 1:
                continue
            shape = replace(base, layers=layers, ffn=ffn)
            c = count(shape, batch, seq, m["quantization"])
            if c["macs_by_layer_class"] == want and c["params"] == m.get("params"):
                return shape, f"{family}, {layers} of {base.layers} blocks, FFN {ffn}"
    return None, None


def remodel_encoder(report: dict, path: Path) -> list[str]:
    before = (report.get("remodelled") or {}).get("energy_kind_before") or report.get("energy", {}).get("energy_kind")
    batch, seq = report["settings"]["batch_size"], report["settings"]["seq_length"]
    targets = [load_target(t) for t in report["energy"]["targets"]]
    lines = []
    for m in report["models"]:
        if "energy" not in m or not m["energy"]:
            continue  # the original run could not read this model's shape; a re-run would not either
        shape, how = encoder_shape(m, batch, seq)
        if shape is None:
            raise DataError(f"{path}: model {m['name']!r}: its stored MAC and parameter counts match no known "
                            "encoder family; re-run its benchmark instead")
        annotate([m], {m["name"]: shape}, targets, batch, seq)
        m["energy_shape"] = how
        lines.append(f"{m['name']}: {how}")
    rapl = report.get("host", {}).get("rapl")
    report["energy"] = {"measured": False, "energy_kind": ENERGY_KIND, "targets": [t.name for t in targets],
                        "note": ENERGY_NOTE + "; this host " + (
                            "exposes readable RAPL counters (host_energy_mj per latency entry, never device energy)"
                            if rapl else "has no readable RAPL energy counters, so no host energy is reported")}
    head = report["headline"]
    by = {m["name"]: m for m in report["models"]}
    if report.get("mode") == "models":
        teacher = next((m for m in report["models"] if m["role"] == "teacher"), None)
        student = by.get((head.get("student") or {}).get("name"))
    else:
        teacher, student = by.get("teacher-pytorch"), by.get("student-onnx-int8")
    ratio = energy_ratios(teacher, student) if teacher and student else None
    if ratio:
        head["energy_kind"], head["energy_ratio"] = ENERGY_KIND, ratio
    report["remodelled"] = _stamp(before)
    from edgedistill.report.results import render_markdown

    md = render_markdown(report)
    if report.get("command") == "python benchmarks/headline.py":
        from headline import appendix

        md += appendix(report)
    md += (f"\nDevice columns re-modelled ({ENERGY_KIND}, was {before}) on {report['remodelled']['on'][:10]} by "
           f"`python benchmarks/remodel.py`: shapes checked against the stored counts ({'; '.join(lines)}); "
           f"every measured number is from the run of {report.get('created', '?')[:10]}.\n")
    write_json_atomic(path, report)
    write_text_atomic(path.with_suffix(".md"), md)
    return lines


def remodel_llm(res: dict, path: Path) -> list[str]:
    from device_model import smollm2_shape

    from edgedistill.llm.bench import _energy, markdown

    e = res.get("export")
    if not e:
        raise DataError(f"{path}: no 'export' section: nothing was benchmarked on the device side")
    kd = next(r for r in res["runs"] if r["method"] == "kd" and r["seed"] == 0)
    teacher, how = smollm2_shape()
    shapes = {"student-8da4w": (replace(teacher, layers=len(kd["layers"])), e["student_pte_bytes"]),
              "teacher-8da4w": (teacher, e["teacher_pte_bytes"])}
    prompt, context = e["prompt_tokens"], e["prompt_tokens"] + e["decode_tokens"] // 2  # as run_llm_bench
    energy, lines = {}, []
    for name, (s, pte) in shapes.items():
        info = {"layers": s.layers, "hidden_size": s.hidden, "intermediate_size": s.ffn,
                "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads, "head_dim": s.head_dim,
                "vocab_size": s.vocab}
        energy[name] = _energy({"model": info, "scheme": "et-8da4w"}, prompt, context, ["phone"])
        # the .pte stores what a decode step streams (every linear and the head, int4 in groups of 32) plus the
        # whole int8 embedding table, of which a step reads one row
        streamed = decode_workload(s, context, precision_for_scheme("et-8da4w")).weight_bytes
        stored = streamed - s.hidden + s.vocab * s.hidden
        if abs(stored / pte - 1) > BYTES_TOLERANCE:
            raise DataError(f"{path}: {name}: modelled {stored / 1e6:.1f} MB vs the measured .pte's "
                            f"{pte / 1e6:.1f} MB; the shape does not match, re-run the benchmark instead")
        lines.append(f"{name}: {s.layers} layers ({how}), modelled {stored / 1e6:.1f} MB vs .pte {pte / 1e6:.1f} MB")
    rows = e["bench_table"].split("\n")
    out = []
    for row in rows:
        cells = row.split(" | ")
        name = row[2:].split(" |")[0] if row.startswith("| ") else None
        if name in energy:
            x = energy[name]["phone"]["energy_mj_per_token"]
            cells[-1] = f"{x['central']:.3g} ({x['lo']:.2g}-{x['hi']:.2g}, phone) |"
            row = " | ".join(cells)
        if row.startswith("Modelled on the device") or row.startswith("Device columns re-modelled"):
            break  # an earlier re-model's device table: rebuilt below
        out.append(row)
    mini = {"models": [{"name": n, "scheme": "et-8da4w", "size_bytes": 1, "threads": {}, "energy_per_token": v}
                       for n, v in energy.items()], "settings": {"targets": ["phone"]}, "ratios": {}}
    device_table = markdown(mini).split("\n")
    device_table = device_table[device_table.index("Modelled on the device (modelled-v2, not measured; "
                                                   "central [lo-hi]):"):]
    before = "modelled-v1" if "remodelled" not in res else res["remodelled"]["energy_kind_before"]
    res["remodelled"] = _stamp(before)
    while out and not out[-1]:
        out.pop()
    e["bench_table"] = "\n".join(out + [""] + device_table + [
        "", f"Device columns re-modelled ({ENERGY_KIND}, was {before}) on {res['remodelled']['on'][:10]} by "
            "`python benchmarks/remodel.py`; prefill, decode, first-token and RSS columns are the original run's."])
    e["energy_per_token"], e["energy_kind"] = energy, ENERGY_KIND
    e["energy_shapes"] = lines
    from llm import render_md

    write_json_atomic(path, res)
    write_text_atomic(path.with_suffix(".md"), render_md(res))
    return lines


def remodel_classifier(res: dict, path: Path) -> list[str]:
    """classifier.json keeps only each task's teacher / student energy ratio; it is taken from the task's bench
    report (``tasks.<task>.report``) once that report is ``modelled-v2`` and holds the very same model files
    (teacher and student sizes equal to the stored ones), e.g. after a ``--reuse`` re-run whose timings were
    too noisy to keep."""
    lines, before = [], None
    for task, t in res["tasks"].items():
        rp = Path(t["report"])
        try:
            rep = json.loads(rp.read_text())
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: task {task!r}: its bench report {rp} cannot be read ({err})") from None
        by = {m["name"]: m for m in rep["models"]}
        b = t["bench"]
        same = (by.get("teacher-pytorch", {}).get("size_bytes") == b["teacher"]["size_bytes"]
                and by.get("student-onnx-int8", {}).get("size_bytes") == b["student"]["size_bytes"])
        if rep["headline"].get("energy_kind") != ENERGY_KIND or not same:
            raise DataError(f"{path}: task {task!r}: {rp} is not a {ENERGY_KIND} report of the same models "
                            "(teacher and student sizes must equal the stored ones)")
        before = before or next(iter(b.get("energy_ratio", {}).values()), {}).get("energy_kind")
        b["energy_ratio"] = rep["headline"]["energy_ratio"]
        lines.append(f"{task}: from {rp} ({rep['created']}), teacher and student sizes equal")
    res["remodelled"] = _stamp((res.get("remodelled") or {}).get("energy_kind_before") or before)
    from classifier import render

    write_json_atomic(path, res)
    write_text_atomic(path.with_suffix(".md"), render(res))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="stored results: an encoder bench report (headline.json, "
                    "quickstart.json) or the LLM benchmark's llm.json")
    args = ap.parse_args(argv)
    for p in map(Path, args.reports):
        try:
            report = json.loads(p.read_text())
        except (OSError, ValueError) as err:
            print(f"error: {p}: {err}", file=sys.stderr)
            return 2
        try:
            if report.get("kind") == "edgedistill.benchmark.classifier":
                lines = remodel_classifier(report, p)
            elif "runs" in report and "export" in report:
                lines = remodel_llm(report, p)
            else:
                lines = remodel_encoder(report, p)
        except DataError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{p}: re-modelled ({ENERGY_KIND})" + "".join(f"\n  {x}" for x in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
