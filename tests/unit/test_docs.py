"""The README documents what the code accepts: every recipe key, loss, scheme and target."""

import dataclasses
import re
from pathlib import Path

from edgedistill.distill.losses import LOSSES
from edgedistill.export.quant import SCHEMES
from edgedistill.recipe import BenchSpec, DataSpec, DistillSpec, ExportSpec, StudentSpec, TeacherSpec
from edgedistill.targets import list_targets

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_recipe_key_is_documented():
    for cls in (TeacherSpec, StudentSpec, DataSpec, DistillSpec, ExportSpec, BenchSpec):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in README, f"[{cls.__name__}] {f.name} missing from README"


def test_every_llm_recipe_key_and_scheme_is_documented():
    from edgedistill.llm.backends import LLM_SCHEMES
    from edgedistill.llm.recipe import LLMBenchSpec, LLMDataSpec, LLMExportSpec, LLMStudentSpec, LLMTeacherSpec

    for cls in (LLMTeacherSpec, LLMDataSpec, LLMStudentSpec, LLMExportSpec, LLMBenchSpec):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in README, f"LLM [{cls.__name__}] {f.name} missing from README"
    for name in LLM_SCHEMES:
        assert f"`{name}`" in README


def test_losses_schemes_and_targets_are_documented():
    for name in LOSSES:
        assert f"`{name}`" in README
    for name in SCHEMES:
        assert f"`{name}`" in README
    for name in list_targets():
        assert f"`{name}`" in README


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    commands = [ln for ln in blocks[0].splitlines() if ln and not ln.startswith("#")]
    assert len(commands) == 2 and commands[0].endswith("edgedistill run")
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert commands[1] in ci
