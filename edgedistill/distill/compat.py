"""Teacher/student tokenizer compatibility, checked when the distill stage starts (before any
model is built or trained).

Token-level losses (hidden states, attention) compare the two models position by position, so
both must split text into the same tokens. A student cut from another model (``[student] base``)
keeps its own tokenizer; when its vocabulary differs from the teacher's, those losses are
meaningless and the run stops here with both tokenizers named, instead of at the first step.
"""

from __future__ import annotations

from ..errors import RecipeError
from ..models.loading import load_tokenizer
from .losses import get_loss
from .strategies import get_strategy

TOKEN_LEVEL = frozenset({"hidden", "qkv"})


def token_level_losses(spec) -> list[str]:
    """Losses of the recipe (and its strategy) that need token-aligned teacher states."""
    scheduled = spec.options.scheduled_losses()
    names = [n for n, w in spec.losses.items() if (w > 0 or scheduled.get(n, 0) > 0)
             and get_loss(n).needs & TOKEN_LEVEL]
    if get_strategy(spec.strategy).token_level:
        names.append(f"fitnets (strategy {spec.strategy!r})")
    return names


def check_tokenizers(recipe, teacher_folder, base_folder) -> None:
    """Raise when token-level losses pair a teacher and a ``[student] base`` with different vocabularies."""
    if base_folder is None:
        return
    needs = token_level_losses(recipe.distill)
    if not needs:
        return
    t_tok, s_tok = load_tokenizer(teacher_folder), load_tokenizer(base_folder)
    t_vocab, s_vocab = t_tok.get_vocab(), s_tok.get_vocab()
    if t_vocab == s_vocab:
        return
    tn, sn = len(t_vocab), len(s_vocab)
    t_name = recipe.teacher.package or recipe.teacher.path or str(teacher_folder)
    logit_hint = "kd, sorted_prob" if recipe.distill.strategy != "embedding" else "cosine, mse"
    raise RecipeError(f"[distill] key 'losses': {', '.join(needs)} match token-level states, but the teacher "
                      f"tokenizer ({t_name}: {type(t_tok).__name__}, {tn} tokens) and the [student] base "
                      f"{recipe.student.base!r} tokenizer ({type(s_tok).__name__}, {sn} tokens) split text "
                      f"differently; use sentence-level losses ({logit_hint}; sorted_prob needs no shared "
                      "vocabulary) or a base with the teacher's tokenizer")
