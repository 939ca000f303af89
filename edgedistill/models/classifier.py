"""Sequence classifiers: build a classifier teacher from a shipped encoder, load any HF classifier.

No fine-tuned sentiment classifier ships inside a registry package (research/models-data.md),
so logit-based KD needs one built here: the recipe's encoder (e.g. the packaged
all-MiniLM-L6-v2) gets a pooler + linear head trained on the labelled train split (one output
per class found in the data, see :mod:`edgedistill.data.labels`), the
encoder frozen (optionally its top N blocks trained too). The result is a plain
``...ForSequenceClassification`` folder (safetensors, ``id2label`` in config.json) that
``transformers`` loads without edgedistill. A user's own fine-tuned HF classifier is used
the same way: ``[teacher] path = "its/folder"``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, ModelError
from ..fileutil import atomic_dir, write_json_atomic
from ..data.labels import class_counts
from ..progress import say
from .loading import _short, load_tokenizer, quiet_transformers, weights_file

LABELS = {0: "negative", 1: "positive"}
"""Default names of a two-class head built without data (tests, placeholders); trained teachers use the data's."""


@dataclass
class ClassifierTrainSpec:
    unfreeze_layers: int = 0
    """Top encoder blocks trained with the head (0 = frozen encoder, head only)."""
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 0.0
    """0 picks 2e-3 for a head on a frozen encoder and 5e-5 when blocks are unfrozen."""
    seed: int = 0

    def lr(self) -> float:
        return self.learning_rate or (2e-3 if self.unfreeze_layers == 0 else 5e-5)


def is_classifier_folder(folder: Path) -> bool:
    import json

    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return any(a.endswith("ForSequenceClassification") for a in cfg.get("architectures") or [])


def load_classifier(folder: Path, attn_implementation: str | None = None):
    """(model, tokenizer) of a local HF sequence classifier, eval mode, right padding."""
    quiet_transformers()
    from transformers import AutoModelForSequenceClassification

    folder = Path(folder)
    weights_file(folder)
    if not is_classifier_folder(folder):
        raise ModelError(f"{folder}: not a sequence classifier (config.json 'architectures' has no "
                         "...ForSequenceClassification); build one with 'edgedistill teacher classifier' or "
                         "point [teacher] path at a fine-tuned HF classifier")
    tokenizer = load_tokenizer(folder)
    try:
        kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, **kw)
    except Exception as e:  # transformers raises many types; all mean "unreadable"
        raise ModelError(f"{folder}: cannot load the classifier ({_short(e)})") from None
    model.eval()
    return model, tokenizer


def classifier_from_encoder(encoder, num_labels: int = 2, labels: dict[int, str] | None = None):
    """A ``...ForSequenceClassification`` of the encoder's class sharing its weights; head freshly initialised."""
    from transformers import AutoModelForSequenceClassification

    labels = labels or LABELS
    cfg = copy.deepcopy(encoder.config)
    cfg.num_labels = num_labels
    cfg.id2label = {i: labels[i] for i in range(num_labels)}
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    try:
        model = AutoModelForSequenceClassification.from_config(cfg)
    except ValueError as e:
        raise ModelError(f"{type(encoder).__name__}: transformers has no sequence-classification head for it "
                         f"({_short(e)})") from None
    missing, unexpected = model.base_model.load_state_dict(encoder.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(f"cannot place the encoder's weights in {type(model).__name__} "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model


def _encoder_blocks(model):
    enc = getattr(model.base_model, "encoder", None)
    return getattr(enc, "layer", None)


def _head_only(model):
    """``f(cls_state [B, H]) -> logits`` when the head reads only the first token (BERT-style), else None."""
    base = model.base_model
    pooler = getattr(base, "pooler", None)
    if pooler is None or not hasattr(model, "classifier") or not hasattr(model, "dropout"):
        return None
    return lambda cls: model.classifier(model.dropout(pooler(cls.unsqueeze(1))))


def _top_forward(model, start: int):
    """``f(states [B, T, H], mask [B, T]) -> logits`` running blocks ``start..`` and the head on the
    input states of block ``start`` (BERT-style models), or None where that is not available."""
    head, blocks = _head_only(model), _encoder_blocks(model)
    if head is None or blocks is None:
        return None
    try:
        from transformers.masking_utils import create_bidirectional_mask
    except ImportError:
        return None

    def run(h, mask):
        m = create_bidirectional_mask(config=model.config, inputs_embeds=h, attention_mask=mask)
        for block in blocks[start:]:
            h = block(h, m)
        return head(h[:, 0])

    return run


def _padded(targets, layer: int, idx) -> tuple:
    """Cached ragged token states of rows ``idx`` as a padded batch and its mask."""
    import torch

    rows = [targets.hidden_for(i, layer) for i in idx]
    width = max(len(r) for r in rows)
    h = np.zeros((len(rows), width, rows[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for j, r in enumerate(rows):
        h[j, : len(r)] = r
        mask[j, : len(r)] = 1
    return torch.from_numpy(h), torch.from_numpy(mask)


def _accuracy(model, tokenizer, texts, labels, max_length: int, batch_size: int = 128) -> float:
    import torch

    preds = predict_logits(model, tokenizer, texts, max_length, batch_size).argmax(1)
    return float((torch.from_numpy(preds) == torch.as_tensor(labels)).float().mean()) if len(texts) else 0.0


def predict_logits(model, tokenizer, texts, max_length: int, batch_size: int = 128) -> np.ndarray:
    import torch

    from ..distill.device import model_device, to_device
    from .encode import length_order

    dev = model_device(model)
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    order = length_order(tokenizer, texts, max_length)
    was = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            feats = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt")
            out[idx] = model(**to_device(feats, dev)).logits.float().cpu().numpy()
    model.train(was)
    return out


def labelled_split(ws, split: str, label2id: dict[str, int] | None = None) -> tuple[list[str], np.ndarray]:
    """Texts and class ids of the labelled examples of a split (labels, or the sign of the score).

    ``label2id``: a trained model's mapping; named labels of the data are mapped through it (so a
    student keeps its teacher's class order). Integer labels are class ids already."""
    ps = ws.probe_set(split)
    texts = ws.texts(split)
    labels = ps.labels
    names = ws.label_names
    if label2id and ws.has_labels and not all(n.lstrip("+-").isdigit() for n in names):
        unknown = [n for n in names if n not in label2id]
        if unknown:
            raise DataError(f"[data] label {unknown[0]!r} is not a class of the teacher (its classes: "
                            f"{', '.join(sorted(label2id, key=label2id.get))})")
        labels = np.array([label2id[names[i]] for i in labels], dtype=np.int64)
    return [texts[i] for i in ps.idx], labels


def config_labels(config) -> dict[int, str]:
    """``id2label`` of a HF config with int keys (JSON round trips turn them into strings)."""
    return {int(k): str(v) for k, v in (config.id2label or {}).items()}


def train_classifier_teacher(ws, out: Path, spec: ClassifierTrainSpec) -> dict:
    """Train head (+ top blocks) on the recipe's labelled train split; write the HF folder to ``out``."""
    import torch

    from ..distill.device import runtime, to_device

    t = ws.recipe.teacher
    rt = runtime(ws.recipe.distill)  # [distill] device: the head and top blocks train there too
    dev = rt.device
    encoder, tokenizer = ws.teacher
    names = ws.label_names
    tr_texts, tr_labels = labelled_split(ws, "train")
    va_texts, va_labels = labelled_split(ws, "validation")
    te_texts, te_labels = labelled_split(ws, "test")
    if len(tr_texts) < spec.batch_size or len(set(tr_labels.tolist())) < 2 or not len(va_texts):
        raise DataError(f"[data] {ws.recipe.data.path or ws.recipe.data.source}: {len(tr_texts)} labelled training "
                        f"sentences with {len(set(tr_labels.tolist()))} classes; a classifier teacher needs labels "
                        f"(or scores) of at least two classes in train, and labelled validation sentences "
                        f"(at least --batch-size {spec.batch_size} in train)")
    counts = {split: class_counts(y, names) for split, y in (("train", tr_labels), ("validation", va_labels),
                                                              ("test", te_labels))}
    source = "the label field " + repr(ws.recipe.data.label_field) if ws.has_labels else "the sign of the score"
    say(f"classes from {source}: {len(names)} ({', '.join(names[:20])}{', ...' if len(names) > 20 else ''})")
    for split, c in counts.items():
        say(f"  {split}: {sum(c.values())} labelled sentences; " + ", ".join(f"{k} {v}" for k, v in c.items()))
    blocks = _encoder_blocks(encoder)
    n_blocks = len(blocks) if blocks is not None else 0
    if not 0 <= spec.unfreeze_layers <= n_blocks:
        raise DataError(f"--unfreeze-layers {spec.unfreeze_layers}: the encoder has {n_blocks} blocks")
    torch.manual_seed(spec.seed)
    model = classifier_from_encoder(encoder, len(names), dict(enumerate(names)))
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = list(model.classifier.parameters())
    pooler = getattr(model.base_model, "pooler", None)
    if pooler is not None:
        trainable += list(pooler.parameters())
    for block in list(_encoder_blocks(model) or [])[n_blocks - spec.unfreeze_layers :]:
        trainable += list(block.parameters())
    for p in trainable:
        p.requires_grad_(True)
    model.to(dev)
    opt = torch.optim.AdamW(trainable, lr=spec.lr(), weight_decay=0.01)
    start = n_blocks - spec.unfreeze_layers
    head = _head_only(model) if spec.unfreeze_layers == 0 else None
    top = _top_forward(model, start) if spec.unfreeze_layers > 0 else None
    rng = np.random.default_rng(spec.seed)
    y = torch.as_tensor(tr_labels).to(dev)
    t0 = time.perf_counter()
    from ..distill.teacher_cache import teacher_targets

    # The frozen part of the encoder gives the same states every epoch: they are computed once
    # (and cached on disk), so each step runs only the trainable blocks and the head.
    def cached(texts, split):
        return teacher_targets(encoder, tokenizer, ws.teacher_ref, texts, t.max_length, "cls", False,
                               layers=[start] if top is not None else [], desc=f"encoder states ({split})", rt=rt)

    if head is not None:
        feats = torch.from_numpy(np.array(cached(tr_texts, "train").embeddings)).to(dev)
        va_feats = torch.from_numpy(np.array(cached(va_texts, "validation").embeddings)).to(dev)
    elif top is not None:
        states, va_states = cached(tr_texts, "train"), cached(va_texts, "validation")

    def val_accuracy() -> float:
        if head is None and top is None:
            return _accuracy(model, tokenizer, va_texts, va_labels, t.max_length)
        model.eval()
        with torch.inference_mode():
            if head is not None:
                logits = head(va_feats)
            else:
                logits = torch.cat([top(*to_device(_padded(va_states, start, range(i, min(i + 128, len(va_texts)))),
                                                   dev)) for i in range(0, len(va_texts), 128)])
        model.train()
        return float((logits.argmax(1).cpu().numpy() == va_labels).mean())
    best = (-1.0, None, 0)
    history = []
    for epoch in range(1, spec.epochs + 1):
        model.train()
        perm = rng.permutation(len(tr_texts))
        losses = []
        for b0 in range(0, len(perm), spec.batch_size):
            idx = perm[b0 : b0 + spec.batch_size]
            if head is not None:
                logits = head(feats[idx])
            elif top is not None:
                logits = top(*to_device(_padded(states, start, idx), dev))
            else:
                batch = tokenizer([tr_texts[i] for i in idx], padding=True, truncation=True,
                                  max_length=t.max_length, return_tensors="pt")
                logits = model(**to_device(batch, dev)).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        acc = val_accuracy()
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_accuracy": acc})
        say(f"teacher classifier epoch {epoch}/{spec.epochs}: train loss {np.mean(losses):.4f}, "
            f"validation accuracy {acc:.4f}")
        if acc > best[0]:
            best = (acc, {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}, epoch)
    model.to("cpu")  # saved and tested on the CPU, as before
    model.load_state_dict(best[1])
    model.eval()
    test_acc = _accuracy(model, tokenizer, te_texts, te_labels, t.max_length)
    record = {
        "kind": "edgedistill-classifier-teacher",
        "encoder": {"source": ws.teacher_ref.source, "sha256": ws.teacher_ref.sha256},
        "data": {"source": ws.recipe.data.source, "train": len(tr_texts), "validation": len(va_texts),
                 "test": len(te_texts), "labels": names, "label_source": source, "class_counts": counts},
        "train": asdict(spec) | {"learning_rate": spec.lr()},
        "best_epoch": best[2],
        "val_accuracy": best[0],
        "test_accuracy": test_acc,
        "seconds": time.perf_counter() - t0,
        "history": history,
    }
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / "teacher.json", record)
    say(f"classifier teacher written to {out}: validation accuracy {best[0]:.4f} (epoch {best[2]}), "
        f"test accuracy {test_acc:.4f}")
    return record
