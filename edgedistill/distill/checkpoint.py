"""Training checkpoints for exact resume.

Layout under a stage's ``OUT/checkpoints/``::

    recipe.json                  fingerprint (recipe + teacher hash) the checkpoints belong to
    gen-1/step-000040/           one checkpoint, written to a temporary folder and renamed into place
        weights.safetensors      the trained module (both peers for mutual learning)
        best.safetensors         the best weights so far
        extra.safetensors        strategy-owned trainable parameters and strategy state (EMA weights)
        optim.pt                 optimizer, scheduler and torch RNG state (loaded with weights_only=True)
        state.json               step, numpy Generator state, history, evaluations, best step/metric
    gen-1/latest.json            which step folder is current (replaced atomically after it is complete)
    gen-1/done/                  a finished generation (born-again runs resume after it)

A kill at any moment leaves either the previous or the new checkpoint current, never a
half-written one. Nothing here is unpickled: tensors are safetensors, and ``optim.pt`` is read
with ``torch.load(weights_only=True)``.

Checkpoints hold no device tensors: everything is moved to the CPU when saved and read onto the
CPU (the loop then moves it to its device), so a run killed on a GPU resumes on a CPU and the
reverse. ``[distill] device`` is left out of the fingerprint for the same reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import RecipeError
from ..fileutil import atomic_dir, sha256_json, write_json_atomic
from .device import to_device

HINT = "delete {folder} to start fresh"


def _tensors(state: dict) -> dict[str, torch.Tensor]:
    # Clones break storage sharing (safetensors refuses shared tensors) and make slices contiguous.
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


class Checkpoints:
    """The checkpoints of one stage run; ``gen(k)`` is the store of generation k."""

    def __init__(self, folder: str | Path, every: int, fingerprint: str):
        self.folder = Path(folder)
        self.every = every
        self.fingerprint = fingerprint

    def check(self) -> bool:
        """True when there are checkpoints to resume from; refuses ones written by another recipe."""
        meta = self.folder / "recipe.json"
        saved = any(self.folder.glob("gen-*/latest.json")) or any(self.folder.glob("gen-*/done/result.json"))
        if not meta.exists() or not saved:
            return False  # nothing to resume (e.g. a run that failed before its first checkpoint)
        found = json.loads(meta.read_text()).get("fingerprint")
        if found != self.fingerprint:
            raise RecipeError(f"{self.folder} holds checkpoints of a different recipe or teacher "
                              f"(fingerprint {str(found)[:12]}, this run {self.fingerprint[:12]}); "
                              + HINT.format(folder=self.folder))
        return True

    def start(self) -> None:
        write_json_atomic(self.folder / "recipe.json", {"fingerprint": self.fingerprint})

    def gen(self, k: int) -> GenerationStore:
        return GenerationStore(self.folder / f"gen-{k}", self.every)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def stage_checkpoints(ws) -> Checkpoints | None:
    """The checkpoints of a distill stage in ``OUT/checkpoints``; None when ``checkpoint_every = 0``."""
    d = ws.recipe.distill
    every = d.eval_every if d.checkpoint_every is None else d.checkpoint_every
    if not every:
        return None
    recipe = ws.recipe.to_dict()
    recipe.get("distill", {}).pop("device", None)  # where it ran does not change what it computes
    return Checkpoints(ws.run_dir / "checkpoints", every,
                       sha256_json({"recipe": sha256_json(recipe), "teacher": ws.teacher_ref.sha256}))


class GenerationStore:
    def __init__(self, folder: Path, every: int):
        self.folder = folder
        self.every = every

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def save(self, step: int, weights: dict, best: dict, extra: dict, torch_state: dict, state: dict) -> None:
        name = f"step-{step:06d}"
        with atomic_dir(self.folder / name) as tmp:
            save_file(_tensors(weights), tmp / "weights.safetensors")
            save_file(_tensors(best), tmp / "best.safetensors")
            save_file(_tensors(extra), tmp / "extra.safetensors")
            torch.save(to_device(torch_state, torch.device("cpu")), tmp / "optim.pt")
            write_json_atomic(tmp / "state.json", state)
        write_json_atomic(self.folder / "latest.json", {"step": step, "folder": name})
        for old in self.folder.glob("step-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> dict | None:
        """The current checkpoint as {weights, best, extra, torch, state}, or None."""
        pointer = self.folder / "latest.json"
        if not pointer.exists():
            return None
        d = self.folder / json.loads(pointer.read_text())["folder"]
        return {"weights": load_file(d / "weights.safetensors"), "best": load_file(d / "best.safetensors"),
                "extra": load_file(d / "extra.safetensors"),
                "torch": torch.load(d / "optim.pt", map_location="cpu", weights_only=True),
                "state": json.loads((d / "state.json").read_text())}

    def finish(self, weights: dict, record: dict) -> None:
        """Mark the generation finished with its delivered weights and result record."""
        with atomic_dir(self.folder / "done") as tmp:
            save_file(_tensors(weights), tmp / "weights.safetensors")
            write_json_atomic(tmp / "result.json", record)
        (self.folder / "latest.json").unlink(missing_ok=True)
        for old in self.folder.glob("step-*"):
            shutil.rmtree(old, ignore_errors=True)

    def finished(self) -> tuple[dict, dict] | None:
        d = self.folder / "done"
        if not (d / "result.json").exists():
            return None
        return load_file(d / "weights.safetensors"), json.loads((d / "result.json").read_text())
