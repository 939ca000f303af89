"""The recipe: one TOML file that says what to distil, how, and for which devices.

Sections: ``[teacher]``, ``[student]``, ``[data]``, ``[distill]``,
``[export]``, ``[bench]``. Every key is declared below with its type and
default; unknown keys are errors. Relative paths are resolved against the
folder that holds the recipe file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import RecipeError
from .fileutil import sha256_json
from .schema import as_dict, load_toml, parse_sections, parse_table
from .schema import fail_key as _fail

RECIPE_VERSION = 1

DEFAULT_BENCH_MODELS = [
    "teacher-pytorch",
    "teacher-onnx",
    "teacher-onnx-int8",
    "student-onnx",
    "student-onnx-int8",
]


def check_model_source(spec, where: str) -> None:
    """A [teacher] section of any recipe kind: exactly one of ``package`` / ``path``, and a well-formed ``sha256``."""
    if (spec.package is None) == (spec.path is None):
        raise RecipeError(f"{where} needs exactly one of 'package' or 'path'")
    if spec.sha256 is not None and (len(spec.sha256) != 64 or any(c not in "0123456789abcdef" for c in spec.sha256)):
        _fail(where, "sha256", f"expected 64 lowercase hex digits, got {spec.sha256!r}")


@dataclass
class TeacherSpec:
    package: str | None = None
    """A teacher that ships inside a registry package (see ``edgedistill.models.teacher.PACKAGED``)."""
    path: str | None = None
    """A local Hugging Face folder (config.json, weights, tokenizer)."""
    sha256: str | None = None
    """Expected sha256 of the weights file; checked before use."""
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    max_length: int = 128

    def validate(self, where: str) -> None:
        check_model_source(self, where)
        if not 8 <= self.max_length <= 8192:
            _fail(where, "max_length", f"expected 8..8192, got {self.max_length}")


@dataclass
class StudentSpec:
    layers: list[int] | None = None
    """Teacher layers (0-based) the student keeps, in order."""
    num_layers: int | None = None
    """Alternative to ``layers``: keep this many, evenly spaced, always including the last."""
    intermediate_size: int | None = None
    """FFN width of the student; neurons are chosen from the teacher's (default: teacher's width)."""
    ffn_selection: Literal["importance", "first"] = "importance"
    calibration_sentences: int = 256
    base: str | None = None
    """Cut the student from this model (a packaged name like [teacher] package, or a local folder) instead of
    the teacher: it keeps its own tokenizer and width, and learns the teacher's sentence embeddings through a
    training-only linear projection. Only sentence-level losses (cosine, mse) apply."""
    vocab: Literal["full", "trim"] = "full"
    """"trim" keeps only the word pieces the training text (plus ``vocab_extra_texts``) uses; the student ships a
    smaller embedding table and its own tokenizer (see ``edgedistill.models.vocab_student``)."""
    vocab_min_count: int = 1
    """With ``vocab = "trim"``: keep pieces seen at least this often (single characters are always kept)."""
    vocab_max_size: int | None = None
    """With ``vocab = "trim"``: at most this many rows (special tokens and characters first, then by frequency)."""
    vocab_extra_texts: str | None = None
    """With ``vocab = "trim"``: a UTF-8 text file, one sentence per line, whose pieces are kept too."""

    def validate(self, where: str) -> None:
        if self.vocab != "trim":
            for key, default in (("vocab_min_count", 1), ("vocab_max_size", None), ("vocab_extra_texts", None)):
                if getattr(self, key) != default:
                    _fail(where, key, f"only applies with vocab = \"trim\" (vocab is {self.vocab!r})")
        if self.vocab_min_count < 1:
            _fail(where, "vocab_min_count", f"expected >= 1, got {self.vocab_min_count}")
        if self.vocab_max_size is not None and self.vocab_max_size < 16:
            _fail(where, "vocab_max_size", f"expected >= 16 rows, got {self.vocab_max_size}")
        if self.vocab_extra_texts is not None and not self.vocab_extra_texts.strip():
            _fail(where, "vocab_extra_texts", "expected a path to a text file, got an empty string")
        if self.layers is not None and self.num_layers is not None:
            raise RecipeError(f"{where} give either 'layers' or 'num_layers', not both")
        if self.layers is not None:
            if not self.layers:
                _fail(where, "layers", "expected at least one layer index")
            if any(i < 0 for i in self.layers) or len(set(self.layers)) != len(self.layers):
                _fail(where, "layers", f"expected distinct non-negative indices, got {self.layers}")
        if self.num_layers is not None and self.num_layers < 1:
            _fail(where, "num_layers", f"expected >= 1, got {self.num_layers}")
        if self.intermediate_size is not None and self.intermediate_size < 1:
            _fail(where, "intermediate_size", f"expected >= 1, got {self.intermediate_size}")


@dataclass
class DataSpec:
    source: Literal["vader", "jsonl", "csv", "txt"] = "vader"
    path: str | None = None
    text_field: str = "text"
    label_field: str = "label"
    score_field: str = "score"
    limit: int | None = None
    """Use at most this many sentences (a deterministic subset), e.g. for quick tests."""
    split: list[int] = field(default_factory=lambda: [8, 1, 1])
    """Train / validation / test shares out of their sum, assigned by a hash of each example's id."""
    probe_min_abs_score: float = 0.5
    """For score-labelled data: the probe ignores examples with |score| below this."""
    extra_texts: list[Literal["brown", "chatterbot"]] = field(default_factory=list)
    """Unlabelled text sources added to the distillation set only (train; never validation/test): see
    ``edgedistill.data.extra`` (the names are its registered sources)."""
    extra_texts_limit: int | None = None
    """At most this many extra sentences in all (a deterministic subset): bounds the teacher pass."""

    def validate(self, where: str) -> None:
        if len(set(self.extra_texts)) != len(self.extra_texts):
            _fail(where, "extra_texts", f"a source is named twice: {self.extra_texts}")
        if self.extra_texts_limit is not None and (self.extra_texts_limit < 1 or not self.extra_texts):
            _fail(where, "extra_texts_limit", f"expected >= 1 with a non-empty extra_texts, got "
                  f"{self.extra_texts_limit} (extra_texts = {self.extra_texts})")
        if self.source == "vader" and self.path is not None:
            _fail(where, "path", "the 'vader' source is fetched automatically; remove 'path'")
        if self.source != "vader" and self.path is None:
            raise RecipeError(f"{where} missing required key 'path' for source {self.source!r}")
        if len(self.split) != 3 or any(s < 0 for s in self.split) or min(self.split) == 0:
            _fail(where, "split", f"expected three positive integers [train, validation, test], got {self.split}")
        if self.limit is not None and self.limit < 10:
            _fail(where, "limit", f"expected >= 10, got {self.limit}")


@dataclass
class DistillSpec:
    strategy: str = "embedding"
    losses: dict[str, float] = field(default_factory=lambda: {"cosine": 1.0, "hidden_mse": 1.0})
    """Registered loss name -> weight."""
    layer_map: dict[str, int] = field(default_factory=dict)
    """Student layer -> teacher layer for hidden-state losses (default: the layer each student layer was copied from)."""
    max_steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    eval_every: int = 250
    eval_sentences: int = 1000
    seed: int = 0
    freeze_word_embeddings: bool = True
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Training precision: fp32, bf16 autocast (CPU or GPU), or fp16 autocast with a gradient scaler (GPU only)."""
    device: str = "auto"
    """Where training and teacher passes run: auto (the GPU when torch sees one), cpu, cuda or cuda:N."""
    threads: int = 0
    """Torch threads for training; 0 means all cores."""
    checkpoint_every: int | None = None
    """Steps between resumable checkpoints in OUT/checkpoints/; unset means ``eval_every``, 0 turns them off."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step; ``batch_size`` stays the rows per step (memory, not the update, changes)."""
    early_stop_patience: int = 0
    """Stop after this many evaluations without a better validation metric; 0 never stops early."""
    layer_map_mode: Literal["copied", "uniform", "last_k"] = "copied"
    """Default student->teacher layer map when ``layer_map`` is empty (see docs/recipes.md, `layer_map_mode`)."""
    qat: str = "none"
    """Quantization-aware distillation: ``int8`` trains through the int8-dynamic export's fake quantization
    (see ``edgedistill.distill.qat_schemes``); ``none`` quantizes after training."""
    options: Any = field(default=None, metadata={"parsed": False})
    """The strategy's own keys, typed by its ``Options`` dataclass (see ``edgedistill.distill.options``); the
    recipe writes them flat in [distill] beside the keys above. None means the strategy's defaults."""

    def __post_init__(self) -> None:
        from .distill.strategies import get_strategy

        want = get_strategy(self.strategy).Options
        if self.options is None:
            self.options = want()
        elif type(self.options) is not want:
            # Python callers that swap the strategy of a spec keep the options both strategies share.
            names = {f.name for f in dataclasses.fields(want)}
            self.options = want(**{k: v for k, v in dataclasses.asdict(self.options).items() if k in names})

    def replace(self, **changes) -> DistillSpec:
        """A validated copy with ``changes``: common keys and strategy options side by side, as a recipe writes
        them. When the strategy changes, options the new one does not take are dropped unless named here."""
        from .distill.options import as_flat, option_names
        from .distill.strategies import get_strategy

        new = option_names(get_strategy(changes.get("strategy", self.strategy)).Options)
        table = {k: v for k, v in as_flat(self).items()
                 if k not in option_names(type(self.options)) or k in new}
        return DistillSpec.from_table({**table, **changes})

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str = "[distill]") -> DistillSpec:
        """A [distill] table (a recipe's, or keyword arguments) with common and strategy keys side by side."""
        from .distill.options import split_table

        common, own, opts_cls = split_table(table, {f.name for f in dataclasses.fields(cls)} - {"options"}, where)
        options = parse_table(opts_cls, own, where)
        spec = parse_table(cls, common, where)
        spec.options = options
        options.cross_check(spec, where)
        return spec

    def validate(self, where: str) -> None:
        from .distill.device import check_device_spec, check_precision_spec

        check_device_spec(self.device, where)
        check_precision_spec(self.precision, where)
        from .distill.qat_schemes import get_qat

        get_qat(self.qat, "encoder", where)
        if self.checkpoint_every is not None and self.checkpoint_every < 0:
            _fail(where, "checkpoint_every", f"expected steps >= 0 (0 = no checkpoints), got {self.checkpoint_every}")
        if not 1 <= self.grad_accum_steps <= self.batch_size:
            _fail(where, "grad_accum_steps", f"expected 1..batch_size ({self.batch_size}), got {self.grad_accum_steps}")
        if self.early_stop_patience < 0:
            _fail(where, "early_stop_patience", f"expected evaluations >= 0 (0 = off), got {self.early_stop_patience}")
        for key in ("max_steps", "batch_size", "eval_every", "eval_sentences"):
            if getattr(self, key) < 1:
                _fail(where, key, f"expected >= 1, got {getattr(self, key)}")
        if not 0 < self.learning_rate < 1:
            _fail(where, "learning_rate", f"expected a number in (0, 1), got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            _fail(where, "warmup_ratio", f"expected a number in [0, 1), got {self.warmup_ratio}")
        if not self.losses:
            _fail(where, "losses", "expected at least one loss")
        for name, w in self.losses.items():
            if w < 0:
                _fail(where, f"losses.{name}", f"expected a weight >= 0, got {w}")
        for k in self.layer_map:
            if not k.isdigit():
                _fail(where, f"layer_map.{k}", "student layer keys must be non-negative integers")


@dataclass
class ExportSpec:
    targets: list[str] = field(default_factory=lambda: ["phone"])
    format: Literal["onnx"] = "onnx"
    quantization: str = "auto"
    """'auto' takes the scheme the target names; otherwise a registered scheme name."""
    opset: int = 17
    parity_sentences: int = 500
    calibration_sentences: int = 200
    """Training sentences that calibrate static quantisation (int8-static)."""

    def validate(self, where: str) -> None:
        if not self.targets:
            _fail(where, "targets", "expected at least one target name")
        if self.parity_sentences < 10:
            _fail(where, "parity_sentences", f"expected >= 10, got {self.parity_sentences}")
        if self.calibration_sentences < 1:
            _fail(where, "calibration_sentences", f"expected >= 1, got {self.calibration_sentences}")


@dataclass
class BenchSpec:
    batch_size: int | list[int] = 1
    """One batch size, or a list: the latency grid. The first cell (first batch, first length) is the headline."""
    seq_length: int | list[int] = 128
    """One sequence length, or a list (see ``batch_size``)."""
    warmup: int = 10
    runs: int = 50
    repeats: int = 3
    """Fresh processes per model and thread count; the p50 reported is their median."""
    threads: list[int] = field(default_factory=list)
    """Thread counts to measure; empty means the target's count (capped at host cores) and 1."""
    models: list[str] = field(default_factory=lambda: list(DEFAULT_BENCH_MODELS))
    targets: list[str] = field(default_factory=list)
    """Device profiles to model latency and energy for; empty means every built-in target."""
    probe: bool = True
    spearman_sentences: int = 1000

    @property
    def batch_sizes(self) -> list[int]:
        return self.batch_size if isinstance(self.batch_size, list) else [self.batch_size]

    @property
    def seq_lengths(self) -> list[int]:
        return self.seq_length if isinstance(self.seq_length, list) else [self.seq_length]

    def validate(self, where: str) -> None:
        for key, values in (("batch_size", self.batch_sizes), ("seq_length", self.seq_lengths)):
            if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
                _fail(where, key, f"expected a positive integer or a list of distinct ones, got {getattr(self, key)}")
        for key in ("runs", "repeats"):
            if getattr(self, key) < 1:
                _fail(where, key, f"expected >= 1, got {getattr(self, key)}")
        if self.warmup < 0:
            _fail(where, "warmup", f"expected >= 0, got {self.warmup}")
        if any(t < 1 for t in self.threads):
            _fail(where, "threads", f"expected positive thread counts, got {self.threads}")
        bad = [m for m in self.models if m not in DEFAULT_BENCH_MODELS]
        if bad:
            _fail(where, "models", f"unknown model {bad[0]!r} (allowed: {', '.join(DEFAULT_BENCH_MODELS)})")
        if not self.models:
            _fail(where, "models", "expected at least one model")


@dataclass
class Recipe:
    name: str
    teacher: TeacherSpec
    description: str = ""
    recipe_version: int = RECIPE_VERSION
    student: StudentSpec = field(default_factory=StudentSpec)
    data: DataSpec = field(default_factory=DataSpec)
    distill: DistillSpec = field(default_factory=DistillSpec)
    export: ExportSpec = field(default_factory=ExportSpec)
    bench: BenchSpec = field(default_factory=BenchSpec)
    source_path: Path | None = field(default=None, compare=False, repr=False)

    def validate(self, where: str) -> None:
        if self.recipe_version != RECIPE_VERSION:
            _fail(where, "recipe_version", f"this edgedistill reads version {RECIPE_VERSION}, got {self.recipe_version}")
        if not self.name or any(c in self.name for c in "/\\") or self.name.startswith("."):
            _fail(where, "name", f"expected a plain name usable as a folder name, got {self.name!r}")
        from .targets import resolve_targets

        self.export.targets = resolve_targets(self.export.targets, self.base_dir, f"{where} [export] key 'targets'")
        self.bench.targets = resolve_targets(self.bench.targets, self.base_dir, f"{where} [bench] key 'targets'")
        if self.export.quantization != "auto":
            from .distill.qat_schemes import check_export_scheme
            from .export.schemes import canonical

            check_export_scheme(self.distill.qat, canonical(self.export.quantization), f"{where} [export] quantization")
        extra = self.student.vocab_extra_texts
        if extra is not None and not self.resolve(extra).is_file():
            _fail(f"{where} [student]", "vocab_extra_texts", f"no such file {str(self.resolve(extra))!r}")

    @property
    def base_dir(self) -> Path:
        return self.source_path.parent if self.source_path else Path.cwd()

    def resolve(self, rel: str) -> Path:
        p = Path(rel).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def to_dict(self) -> dict:
        from .distill.options import as_flat

        d = as_dict(self)
        d.pop("source_path", None)
        d["distill"] = as_flat(self.distill)  # as the file writes it: strategy keys beside the common ones
        return d

    def sha256(self) -> str:
        """Hash of the parsed recipe (not the file's bytes), recorded in every output."""
        return sha256_json(self.to_dict())


_SECTION_TYPES = {
    "teacher": TeacherSpec,
    "student": StudentSpec,
    "data": DataSpec,
    "distill": DistillSpec.from_table,
    "export": ExportSpec,
    "bench": BenchSpec,
}


@dataclass
class _TopLevel:
    name: str
    description: str = ""
    recipe_version: int = RECIPE_VERSION


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; raises RecipeError naming file and key."""
    path = Path(path)
    table = load_toml(path)
    head, sections = parse_sections(path, table, _SECTION_TYPES, _TopLevel, required=("teacher",))
    recipe = Recipe(**dataclasses.asdict(head), **sections, source_path=path.resolve())
    recipe.validate(f"{path}:")
    return recipe
