"""Chat prompts from the PyPI wheel ``chatterbot-corpus==1.3.3`` (BSD-3; 21 English topic files).

The wheel is fetched once with ``pip download --no-deps`` into the user cache,
sha256-checked, and read as a zip: the package is never installed or
imported. Each ``data/english/*.yml`` file holds ``conversations``, lists of
utterances; the first utterance of each conversation is a user turn, which is
what a prompt for a chat model needs. PyYAML comes with transformers.
"""

from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_dir
from ..errors import DataError
from ..fetching import run_client
from ..fileutil import sha256_file

PACKAGE = "chatterbot-corpus==1.3.3"
WHEEL = "chatterbot_corpus-1.3.3-py2.py3-none-any.whl"
WHEEL_SHA256 = "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"
WHEEL_ENV = "EDGEDISTILL_CHATTERBOT_WHL"
"""Point this at a local copy of the wheel to work without pip or network."""
_PREFIX = "chatterbot_corpus/data/english/"


@dataclass(frozen=True)
class ChatPrompt:
    topic: str
    text: str


def fetch_wheel(dest: Path | None = None) -> Path:
    """The verified wheel (downloaded on first use)."""
    local = os.environ.get(WHEEL_ENV)
    if local:
        if not Path(local).is_file():
            raise DataError(f"{WHEEL_ENV}={local}: file not found")
        path = Path(local)
    else:
        dest = dest or cache_dir("data", "chatterbot-corpus-1.3.3")
        path = dest / WHEEL
        if not (path.is_file() and sha256_file(path) == WHEEL_SHA256):
            print(f"fetching {PACKAGE} (wheel, 346 KB) with pip into {dest}", file=sys.stderr)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
                   "--disable-pip-version-check", "-d", str(dest), PACKAGE]
            run_client(cmd, PACKAGE, "PyPI", f"set {WHEEL_ENV} to a local {WHEEL}", DataError, expect=path,
                       timeout=600)
    digest = sha256_file(path)
    if digest != WHEEL_SHA256:
        raise DataError(f"{path}: sha256 {digest[:16]}... does not match the expected {WHEEL_SHA256[:16]}... "
                        "(corrupt or different file; delete it to re-fetch)")
    return path


def parse_conversations(text: str, source: str) -> list[list[str]]:
    """The ``conversations`` of one corpus YAML file; each a list of utterances (strings)."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    convs = doc.get("conversations") if isinstance(doc, dict) else None
    if not isinstance(convs, list):
        raise DataError(f"{source}: expected a top-level 'conversations' list")
    out = []
    for conv in convs:
        if isinstance(conv, list):
            turns = [str(u).strip() for u in conv if isinstance(u, (str, int, float)) and str(u).strip()]
            if turns:
                out.append(turns)
    return out


def load_prompts(wheel: Path | None = None) -> list[ChatPrompt]:
    """Every distinct opening user turn, in file then corpus order."""
    wheel = wheel or fetch_wheel()
    prompts, seen = [], set()
    try:
        with zipfile.ZipFile(wheel) as z:
            names = sorted(n for n in z.namelist() if n.startswith(_PREFIX) and n.endswith(".yml"))
            if not names:
                raise DataError(f"{wheel}: no {_PREFIX}*.yml files inside")
            for name in names:
                topic = Path(name).stem
                for conv in parse_conversations(z.read(name).decode("utf-8"), f"{wheel.name}:{name}"):
                    if conv[0] not in seen:
                        seen.add(conv[0])
                        prompts.append(ChatPrompt(topic=topic, text=conv[0]))
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{wheel}: cannot read the wheel ({e})") from None
    return prompts


def report_prompts(prompts: list[ChatPrompt], n: int = 5, min_words: int = 3) -> list[ChatPrompt]:
    """A fixed, topic-spread selection: the first question-like prompt of ``n`` different topics."""
    picked, topics = [], set()
    for p in prompts:
        if p.topic in topics or p.topic == "botprofile" or len(p.text.split()) < min_words:
            continue
        picked.append(p)
        topics.add(p.topic)
        if len(picked) == n:
            break
    return picked
