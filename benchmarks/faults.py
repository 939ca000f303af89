"""Reliability battery: bad inputs and injected faults against the installed CLI, each in a subprocess.

Every case builds its input in a fresh folder next to an earlier good output (a bundle, a student), runs
one `edgedistill` command and classifies the outcome:

* a case that must be refused counts as a **clear error** when the command exits non-zero, prints no
  traceback, and its last stderr line is the tool's one-line error (``edgedistill: error: ...``, or
  click's ``Error: ...`` for a bad option);
* **data lost**: a file that existed before the command changed or vanished, or the refused command left
  a new file behind (a partial output);
* recovery cases (a kill -9 mid-run, then the same command again) must end like an uninterrupted run.

Writes ``benchmarks/results/reliability.{json,md}`` with a ``headline``: ``cases``, ``clear_error_rate``,
``data_lost``, ``tracebacks``. Usage: ``python benchmarks/faults.py [--only SUBSTRING] [--group G] [--out PATH]``.
Small tiny-model fixtures: about 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from faults_cases import CASES, Fixtures, Skip  # noqa: E402


@dataclass
class Outcome:
    name: str
    group: str
    refuse: bool
    rc: int
    clear: bool
    traceback: bool
    lost: list[str]
    detail: str

    @property
    def ok(self) -> bool:
        return (self.clear if self.refuse else self.rc == 0 and not self.detail) and not self.lost


def snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in folder.rglob("*"):
        if p.is_file() and "cache" not in p.relative_to(folder).parts:
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cli(argv: list[str], cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "EDGEDISTILL_PROGRESS": "0",
            "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgedistill.cli", *argv], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout)


def killed(argv: list[str], cwd: Path, after_s: float) -> int:
    """Start the command and SIGKILL it after ``after_s`` seconds (if still running); returns its exit code."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EDGEDISTILL_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "edgedistill.cli", *argv], cwd=cwd, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=after_s)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
    return p.returncode


def classify(case, work: Path, before: dict[str, str], res: subprocess.CompletedProcess, detail: str) -> Outcome:
    err = res.stderr.strip()
    last = err.splitlines()[-1] if err else ""
    tb = "Traceback (most recent call last)" in res.stderr
    ours = last.startswith("edgedistill: error:")  # progress lines may come first; the error is one line
    clickish = last.startswith("Error:") and "Traceback" not in err
    clear = res.returncode != 0 and not tb and (ours or clickish)
    if case.expect and case.expect not in err:
        clear = False
        detail = detail or f"error does not mention {case.expect!r}"
    after = snapshot(work)
    lost = [f"changed: {k}" for k in before if k in after and after[k] != before[k] and k not in case.may_change]
    lost += [f"removed: {k}" for k in before if k not in after and k not in case.may_change]
    if case.refuse:
        lost += [f"left: {k}" for k in after if k not in before]
    return Outcome(case.name, case.group, case.refuse, res.returncode, clear, tb, lost,
                   detail or (last[:200] if case.refuse else ""))


def run_cases(cases, base: Path, log=print) -> list[Outcome]:
    """Run ``cases`` in folders under ``base`` (fixtures built once); one Outcome per case that ran."""
    fx = Fixtures.build(base / "fixtures")
    outcomes = []
    for case in cases:
        work = base / case.name
        fx.populate(work)
        try:
            argv = case.setup(work, fx)
        except Skip as s:
            log(f"skip  {case.name}: {s}")
            continue
        before = snapshot(work)
        if case.recover is not None:
            detail = case.recover(work, fx, argv)
            res = subprocess.CompletedProcess(argv, 0 if not detail else 1, "", "")
        else:
            res = cli(argv, work, case.env)
            detail = case.check(work, fx, res) if case.check else ""
        o = classify(case, work, before, res, detail or "")
        if case.cleanup is not None:
            case.cleanup(work, fx)
        outcomes.append(o)
        log(f"{'ok  ' if o.ok else 'FAIL'}  {case.group:8s} {case.name}: rc {o.rc}; {o.detail}"
            + (f"; {o.lost}" if o.lost else ""))
        shutil.rmtree(work, ignore_errors=True)
    return outcomes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="run the cases whose name contains this")
    ap.add_argument("--group", action="append", default=[],
                    help="run only this group (recipe, target, data, model, bundle, cli, fault, disk; repeatable)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability"))
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="edgedistill-faults-"))
    t0 = time.time()
    chosen = [c for c in CASES if args.only in c.name and (not args.group or c.group in args.group)]
    try:
        outcomes = run_cases(chosen, base, log=lambda s: print(s, flush=True))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    refusals = [o for o in outcomes if o.refuse]
    headline = {
        "cases": len(outcomes),
        "refusal_cases": len(refusals),
        "recovery_cases": len(outcomes) - len(refusals),
        "clear_error_rate": round(sum(o.clear for o in refusals) / max(1, len(refusals)), 4),
        "data_lost": sum(bool(o.lost) for o in outcomes),
        "tracebacks": sum(o.traceback for o in outcomes),
        "recovered_rate": round(sum(o.ok for o in outcomes if not o.refuse) / max(1, len(outcomes) - len(refusals)), 4),
        "failed": [o.name for o in outcomes if not o.ok],
    }
    report = {"schema": "edgedistill.reliability/1", "headline": headline, "seconds": round(time.time() - t0, 1),
              "cases": [vars(o) | {"ok": o.ok} for o in outcomes]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(report))
    print(json.dumps(headline, indent=2))
    return 0 if not headline["failed"] else 1


def render(report: dict) -> str:
    h = report["headline"]
    lines = ["# Reliability battery", "",
             f"`python benchmarks/faults.py` ({report['seconds']:.0f} s): {h['cases']} cases, "
             f"{h['refusal_cases']} bad inputs that must be refused and {h['recovery_cases']} injected faults "
             "that must be recovered from.", "",
             f"- clear error rate: **{h['clear_error_rate']:.0%}** (exit non-zero, one line naming the problem, "
             "no traceback)",
             f"- data lost (an earlier output changed, or a partial output left): **{h['data_lost']}**",
             f"- tracebacks: **{h['tracebacks']}**",
             f"- recovered after kill -9 / full disk: **{h['recovered_rate']:.0%}**", "",
             "| group | case | outcome | what the user sees |", "|---|---|---|---|"]
    for c in report["cases"]:
        shown = c["detail"].replace("|", "\\|")
        lines.append(f"| {c['group']} | {c['name']} | {'ok' if c['ok'] else '**FAIL**'} | {shown} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
