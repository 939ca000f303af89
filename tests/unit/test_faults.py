"""Fault injection in CI, on the tiny model: kill -9 during distill and export, then the same command again;
a full disk (a real tmpfs where the test runs as root) during export and while zipping a bundle. The whole
battery (bad inputs too) is ``python benchmarks/faults.py``; these are its recovery and disk cases."""

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import faults  # noqa: E402
from faults_cases import CASES  # noqa: E402

CHOSEN = ["distill_killed_at_step_6_recovers", "export_sigkill_after_2s_then_rerun", "disk_full_during_export",
          "disk_full_during_zip", "bundle_edited_manifest_against_a_pinned_id", "teacher_without_tokenizer"]


def test_the_battery_cases_named_here_exist():
    assert set(CHOSEN) <= {c.name for c in CASES} and len(CASES) >= 60


def test_killed_and_full_disk_runs_recover_and_lose_nothing(tmp_path):
    lines = []
    outcomes = faults.run_cases([c for c in CASES if c.name in CHOSEN], tmp_path, log=lines.append)
    ran = {o.name for o in outcomes}
    skipped = [ln for ln in lines if ln.startswith("skip")]
    assert ran | {ln.split()[1].rstrip(":") for ln in skipped} == set(CHOSEN)
    bad = [f"{o.name}: {o.detail} {o.lost}" for o in outcomes if not o.ok]
    assert not bad, bad
    if skipped:
        pytest.skip(f"ran {len(ran)} cases; {skipped}")
