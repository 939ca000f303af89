"""The optimisation loop shared by the embedding, classification and causal-LM stages.

Callers supply what differs: the batch order (``make_stream``), the loss of a set of rows
(``batch_loss``), the validation metric and, optionally, the optimizer and schedule (``optim``;
default AdamW with warm-up and linear decay). The loop owns what must be the same everywhere:
gradient accumulation, clipping, the NaN stop, evaluation with best-weights keeping, early
stopping and a training-time budget, the per-step JSONL log, checkpoints with exact resume,
and multi-process data parallelism (see :mod:`.parallel`).

``batch_size`` is the global batch of one optimizer step. ``grad_accum_steps`` splits it into
that many micro-batches (and, with N processes, each process takes 1/N of it first), each
loss weighted by its share of the rows, so the update equals one full batch for losses that
average over rows; the data order does not depend on either setting.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import TrainingError
from ..progress import progress, say
from . import parallel
from .checkpoint import GenerationStore
from .device import move_modules, move_params, runtime
from .protocol import Checkpointed
from .trainer import log_step, optimizer


@dataclass
class Metric:
    """The validation metric that picks the kept weights."""

    name: str
    evaluate: Callable[[], float | dict]
    """The metric's value, or a dict of figures that holds it under ``name`` (all go into ``evals``)."""
    higher_is_better: bool = True
    with_loss: bool = False
    """Evaluation rows also carry the step's loss terms (and peak GPU memory), as the LLM report shows them."""

    def better(self, new: float, old: float) -> bool:
        return new > old if self.higher_is_better else new < old


@dataclass
class LoopResult:
    best_state: dict
    best_step: int
    best_value: float
    steps: int = 0
    seconds: float = 0.0
    """Wall time of the loop, evaluations included (summed over resumed sessions)."""
    sentences_per_second: float = 0.0
    """Training throughput, evaluations excluded."""
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    stopped: str = "max_steps"
    """Why the loop ended: ``max_steps``, ``early_stop`` or ``time_budget``."""
    train_seconds: float = 0.0
    """Wall time of the optimizer steps alone, evaluations excluded (summed over resumed sessions)."""


class NonFiniteLoss(TrainingError):
    """A NaN/inf loss; ``best_state``/``best_step`` hold the last good checkpoint."""

    def __init__(self, msg: str, best_state: dict, best_step: int):
        super().__init__(msg)
        self.best_state = best_state
        self.best_step = best_step


# Test hook: the process dies (as if killed) after this many optimizer steps, counted over the
# whole process (all generations), so resume tests are deterministic rather than timing-based.
_EXIT_AFTER = "EDGEDISTILL_TEST_EXIT_AFTER_STEPS"
_steps_done = 0


def _maybe_die() -> None:
    global _steps_done
    _steps_done += 1
    if os.environ.get(_EXIT_AFTER) == str(_steps_done):
        os._exit(75)


def _snapshot(model) -> dict:
    # on the CPU: the kept weights go to disk and to the stage, and must not hold GPU memory
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class StepLog:
    """One JSON line per optimizer step, appended as the run goes (main process only)."""

    def __init__(self, path: Path | None, tags: dict, resume_step: int, enabled: bool):
        self.path = path if enabled else None
        self.tags = tags
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Lines of this run past the resumed checkpoint were never kept: drop them so the
        # log matches an uninterrupted run's.
        kept = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                row = json.loads(line)
                if any(row.get(k) != v for k, v in tags.items()) or row["step"] <= resume_step:
                    kept.append(line + "\n")
        self.path.write_text("".join(kept))

    def write(self, row: dict) -> None:
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps({**self.tags, **row}) + "\n")


def _evaluate(metric: Metric, par) -> dict:
    """``{metric.name: value, ...}`` on every process (only the main process evaluates)."""
    got = metric.evaluate() if par.is_main else 0.0
    row = dict(got) if isinstance(got, dict) else {metric.name: got}
    row[metric.name] = par.from_main(float(row[metric.name]))
    return row


def train_loop(student, extra_params: list, spec, make_stream: Callable[[np.random.Generator], Iterator],
               batch_loss: Callable, metric: Metric, *, after_step: Callable | None = None,
               strategy_state: Checkpointed | None = None, desc: str = "distilling",
               store: GenerationStore | None = None,
               log_path: Path | None = None, log_tags: dict | None = None, optim: Callable | None = None,
               step_fields: Callable[[], dict] | None = None) -> LoopResult:
    """Train ``student`` for ``spec.max_steps`` optimizer steps.

    ``batch_loss(rows, frac)`` returns (loss, {term: value}) for an index array of rows;
    ``strategy_state`` may define ``checkpoint_state()``/``load_checkpoint_state(d)`` for state
    a checkpoint must carry beyond the trainable parameters (EMA weights, counters, sampler RNGs).
    ``optim(student, extra_params, spec)`` returns (params, optimizer, LR scheduler stepped once per
    step); the default is :func:`.trainer.optimizer`. ``step_fields()`` adds fields to each step's
    log row. Optional ``spec`` fields: ``grad_accum_steps``, ``early_stop_patience``, ``grad_clip``
    (default 1.0) and ``time_budget_s`` (stop after the step that used it up, evaluating there).
    """
    par = parallel.current()
    rt = runtime(spec)
    if par.world > 1 and rt.device != par.device:
        if rt.is_cuda != (par.device.type == "cuda"):
            raise TrainingError(f"[distill] device resolves to {rt.device} but the process group runs on "
                                f"{par.device}; launch with EDGEDISTILL_DEVICE=cpu for CPU processes")
        rt.device = par.device  # each process trains on its local rank's GPU
    # Everything the loss touches goes to the run's device before the optimizer sees it; batches
    # are moved by the callers' batch_loss (see trainer.train), evaluation follows the model.
    student.to(rt.device)
    move_params(extra_params, rt.device)
    if strategy_state is not None:
        move_modules(strategy_state, rt.device)
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    params, opt, sched = (optim or optimizer)(student, extra_params, spec)
    scaler = rt.scaler()
    stream = make_stream(rng)
    ckpt = store.latest() if store is not None else None
    if ckpt is None:
        first = _evaluate(metric, par)
        res = LoopResult(best_state=_snapshot(student), best_step=0, best_value=first[metric.name],
                         evals=[{"step": 0, **first}])
        start, seen, eval_seconds, elapsed, bad_evals, window = 1, 0, 0.0, 0.0, 0, {}
    else:
        res, start, seen, eval_seconds, elapsed, bad_evals, window = _restore(
            ckpt, student, extra_params, strategy_state, opt, sched, stream, rng, scaler)
        say(f"resuming from step {start - 1}")
    student.train()
    steplog = StepLog(log_path, log_tags or {}, start - 1, par.is_main)
    t0 = time.perf_counter() - elapsed
    bar = progress(range(start, spec.max_steps + 1), desc=desc, unit="step")
    accum = max(1, getattr(spec, "grad_accum_steps", 1))
    patience = getattr(spec, "early_stop_patience", 0)
    clip = getattr(spec, "grad_clip", 1.0)
    budget = getattr(spec, "time_budget_s", None)
    for step in bar:
        t_step = time.perf_counter()
        rt.reset_peak()
        idx = next(stream)
        frac = (step - 1) / max(1, spec.max_steps - 1)
        lr = opt.param_groups[0]["lr"]
        value, parts = _accumulate(idx, frac, batch_loss, accum, rt, par, scaler)
        if not math.isfinite(value):
            shown = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
            raise NonFiniteLoss(f"distillation stopped: loss is {value} at step {step} ({shown}); lower [distill] "
                                f"learning_rate (now {spec.learning_rate:g}) or check the data",
                                res.best_state, res.best_step)
        par.sum_grads(params)
        if scaler is not None:
            scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(params, clip)
        if scaler is not None:
            scale = scaler.get_scale()
            scaler.step(opt)  # skips the update when fp16 gradients overflowed
            scaler.update()
            # update() lowers the scale exactly when it skipped the step: the schedule then waits too (as in
            # HF's Trainer), so no update is lost to it and torch does not warn of a scheduler run ahead
            if scaler.get_scale() >= scale:
                sched.step()
        else:
            opt.step()
            sched.step()
        opt.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step(student)
        seen += len(idx)
        window = log_step(res.history, window, {"loss": value, **parts}, step, spec.max_steps, sched, bar)
        peak = rt.peak_memory_gib()
        mem = {} if peak is None else {"peak_gpu_gib": peak}  # absent on the CPU: the log stays as it was
        if peak is not None:
            bar.set_postfix(loss=f"{value:.4f}", gpu_gib=f"{peak:.2f}")
        steplog.write({"step": step, "lr": lr, "loss": value, **parts, "seconds": time.perf_counter() - t_step,
                       **mem, **(step_fields() if step_fields is not None else {})})
        out_of_time = budget is not None and time.perf_counter() - t0 - eval_seconds >= budget
        if step % spec.eval_every == 0 or step == spec.max_steps or out_of_time:
            t_eval = time.perf_counter()
            row = _evaluate(metric, par)
            val = row[metric.name]
            eval_seconds += time.perf_counter() - t_eval
            if metric.with_loss:
                row.update(loss=value, **parts, **mem)
            res.evals.append({"step": step, **row})
            improved = metric.better(val, res.best_value)
            if improved:
                res.best_value, res.best_step, bad_evals = val, step, 0
                res.best_state = _snapshot(student)
            else:
                bad_evals += 1
            if par.is_main:
                # the curve, not just the end: a long run shows whether more steps still pay
                label = metric.name if metric.name.startswith("val") else f"validation {metric.name}"
                say(f"  step {step}/{spec.max_steps}: {label} {val:.4g}"
                    + (" (best)" if improved else f" (best {res.best_value:.4g} at step {res.best_step})"))
            if patience and bad_evals >= patience and step < spec.max_steps:
                say(f"early stop at step {step}: no better {metric.name} in {patience} evaluations "
                    f"(best {res.best_value:.4f} at step {res.best_step})")
                res.stopped_early, res.stopped = True, "early_stop"
                res.steps = step
                break
        if out_of_time and step < spec.max_steps:
            say(f"stopping at step {step}: the training time budget of {budget:g} s is used up")
            res.stopped, res.steps = "time_budget", step
            break
        if store is not None and par.is_main and store.due(step) and step < spec.max_steps:
            _save(store, step, student, extra_params, strategy_state, opt, sched, rng, res, seen, eval_seconds,
                  time.perf_counter() - t0, bad_evals, window, scaler)
        _maybe_die()
    else:
        res.steps = spec.max_steps
    res.seconds = time.perf_counter() - t0
    res.train_seconds = max(res.seconds - eval_seconds, 1e-9)
    res.sentences_per_second = seen / res.train_seconds
    student.load_state_dict(res.best_state)
    student.eval()
    # The stage saves, exports and evaluates what it gets back on the CPU; a GPU's memory goes back.
    student.to("cpu")
    move_params(extra_params, torch.device("cpu"))
    if strategy_state is not None:
        move_modules(strategy_state, torch.device("cpu"))
    if rt.is_cuda:
        torch.cuda.empty_cache()
    return res


def _accumulate(idx, frac: float, batch_loss, accum: int, rt, par, scaler=None) -> tuple[float, dict]:
    """Backward over this process's micro-batches of the global batch ``idx``; returns the
    global batch's loss and terms (row-weighted means, summed over processes)."""
    n = len(idx)
    total, parts = 0.0, {}
    for rows in np.array_split(par.slice(idx), accum):
        if not len(rows):
            continue
        share = len(rows) / n
        with rt.autocast():
            loss, terms = batch_loss(rows, frac)
        # share is 1.0 for one process without accumulation; the product is then exact.
        scaled = loss * share
        (scaled if scaler is None else scaler.scale(scaled)).backward()
        total += float(loss.detach()) * share
        for k, v in terms.items():
            parts[k] = parts.get(k, 0.0) + v * share
    if par.world > 1:
        keys = sorted(parts)
        t = par.sum_(torch.tensor([total] + [parts[k] for k in keys], dtype=torch.float64, device=par.device)).cpu()
        total, parts = float(t[0]), {k: float(v) for k, v in zip(keys, t[1:].tolist(), strict=True)}
    return total, parts


def _extra_state(extra_params: list, strategy_state) -> dict:
    out = {f"param.{i}": p for i, p in enumerate(extra_params)}
    if strategy_state is not None:
        out.update({f"strategy.{k}": v for k, v in strategy_state.checkpoint_state().items()})
    return out


def _save(store, step, student, extra_params, strategy_state, opt, sched, rng, res, seen, eval_seconds, elapsed,
          bad_evals, window, scaler=None) -> None:
    state = {"step": step, "numpy_rng": rng.bit_generator.state, "history": res.history, "evals": res.evals,
             "best_step": res.best_step, "best_value": res.best_value, "seen": seen, "eval_seconds": eval_seconds,
             "elapsed": elapsed, "bad_evals": bad_evals, "window": window}
    torch_state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state()}
    if scaler is not None:
        torch_state["grad_scaler"] = scaler.state_dict()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch_state["cuda_rng"] = torch.cuda.get_rng_state()  # a CPU tensor; used only when resumed on a GPU
    store.save(step, student.state_dict(), res.best_state, _extra_state(extra_params, strategy_state), torch_state,
               state)


def _restore(ckpt, student, extra_params, strategy_state, opt, sched, stream, rng, scaler=None):
    s = ckpt["state"]
    student.load_state_dict(ckpt["weights"])
    extra = ckpt["extra"]
    with torch.no_grad():
        for i, p in enumerate(extra_params):
            p.copy_(extra[f"param.{i}"])
    if strategy_state is not None:
        strategy_state.load_checkpoint_state({k.removeprefix("strategy."): v for k, v in extra.items()
                                              if k.startswith("strategy.")})
    # The checkpoint was read onto the CPU; load_state_dict copies weights onto the student's device
    # and the optimizer casts its state to each parameter's device.
    opt.load_state_dict(ckpt["torch"]["optimizer"])
    sched.load_state_dict(ckpt["torch"]["scheduler"])
    torch.set_rng_state(ckpt["torch"]["torch_rng"])
    if scaler is not None and "grad_scaler" in ckpt["torch"]:
        scaler.load_state_dict(ckpt["torch"]["grad_scaler"])
    if "cuda_rng" in ckpt["torch"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(ckpt["torch"]["cuda_rng"])
    # The batch stream is a deterministic function of the seed: replaying it to the step puts
    # it (and the numpy Generator behind it) exactly where the killed run was.
    for _ in range(s["step"]):
        next(stream)
    if rng.bit_generator.state != s["numpy_rng"]:
        raise TrainingError(f"checkpoint at step {s['step']}: the replayed data order differs from the saved one; "
                            "delete the checkpoints folder to start fresh")
    res = LoopResult(best_state=ckpt["best"], best_step=s["best_step"], best_value=s["best_value"],
                     history=s["history"], evals=s["evals"])
    return res, s["step"] + 1, s["seen"], s["eval_seconds"], s["elapsed"], s["bad_evals"], s["window"]
