"""docs/ documents what the code accepts, each thing in its own table; the README stays a front door.

Each recipe key must appear in the first column of the table under the heading of its own section
(`### `[distill]``, `### LLM `[export]``...), not merely somewhere in the text; losses, schemes and
targets must be rows of their reference tables; every relative link in README.md and docs/ must
point at a file (and heading) that exists.
"""

import dataclasses
import re
from pathlib import Path

import pytest

from edgedistill.distill.losses import LOSSES
from edgedistill.export.schemes import ALIASES, SCHEMES, names
from edgedistill.recipe import BenchSpec, DataSpec, DistillSpec, ExportSpec, Recipe, StudentSpec, TeacherSpec
from edgedistill.targets import list_targets

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()


def _sections(text: str) -> dict[str, str]:
    """Heading text -> the body up to the next heading of any level."""
    parts = re.split(r"^(#{1,4} .*)$", text, flags=re.M)
    return {parts[i].lstrip("#").strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _first_column_names(body: str) -> set[str]:
    """Backticked names in the first cell of every table row of ``body``."""
    names = set()
    for line in body.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([^`]+)`", first))
    return names


RECIPES = _sections((DOCS / "recipes.md").read_text())


def _keys_of(section: str) -> set[str]:
    assert section in RECIPES, f"docs/recipes.md has no section {section!r}"
    return _first_column_names(RECIPES[section])


ENCODER_SECTIONS = {"`[teacher]`": TeacherSpec, "`[student]`": StudentSpec, "`[data]`": DataSpec,
                    "`[distill]`": DistillSpec, "`[export]`": ExportSpec, "`[bench]`": BenchSpec}


@pytest.mark.parametrize("heading", sorted(ENCODER_SECTIONS))
def test_every_encoder_recipe_key_is_in_its_sections_table(heading):
    documented = _keys_of(heading)
    fields = [f.name for f in dataclasses.fields(ENCODER_SECTIONS[heading]) if f.metadata.get("parsed", True)]
    missing = [name for name in fields if name not in documented]
    assert not missing, f"docs/recipes.md {heading} table lacks {missing}"


def test_every_strategy_option_is_in_the_strategy_options_table_and_not_among_the_common_keys():
    from edgedistill.distill.options import option_names
    from edgedistill.distill.strategies import STRATEGIES

    documented, common = _keys_of("`[distill]` strategy options"), _keys_of("`[distill]`")
    keys = set().union(*(option_names(cls.Options) for cls in STRATEGIES.values()))
    assert keys and not keys - documented, f"strategy options table lacks {sorted(keys - documented)}"
    assert not keys & common, f"strategy options listed as common [distill] keys: {sorted(keys & common)}"
    rows = {name: line.split("|")[2] for line in RECIPES["`[distill]` strategy options"].splitlines()
            if line.startswith("| `") for name in re.findall(r"`([^`]+)`", line.split("|")[1])}
    for key in keys:  # the strategies column names the strategies that take the key
        takers = sorted(n for n, cls in STRATEGIES.items() if key in option_names(cls.Options))
        row = rows[key]
        assert "all classification" in row or all(f"`{t}`" in row for t in takers), (key, row, takers)


def test_top_level_recipe_keys_are_documented():
    documented = _keys_of("Encoder recipes")
    sections = {f.name for f in dataclasses.fields(Recipe) if f.type in ("TeacherSpec", "StudentSpec", "DataSpec",
                                                                         "DistillSpec", "ExportSpec", "BenchSpec")}
    top = [f.name for f in dataclasses.fields(Recipe) if f.name not in sections and f.name != "source_path"]
    assert top and not [k for k in top if k not in documented]


def test_every_llm_recipe_key_is_in_its_sections_table():
    from edgedistill.llm.recipe import (LLMBenchSpec, LLMDataSpec, LLMDistillSpec, LLMExportSpec, LLMStudentSpec,
                                        LLMTeacherSpec)

    llm = {"LLM `[teacher]`": LLMTeacherSpec, "LLM `[data]`": LLMDataSpec, "LLM `[student]`": LLMStudentSpec,
           "LLM `[distill]`": LLMDistillSpec, "LLM `[export]`": LLMExportSpec, "LLM `[bench]`": LLMBenchSpec}
    for heading, cls in llm.items():
        documented = _keys_of(heading)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in documented]
        assert not missing, f"docs/recipes.md {heading} table lacks {missing}"


def test_losses_schemes_and_targets_are_rows_of_their_tables():
    losses = _first_column_names((DOCS / "distillation.md").read_text())
    assert not [n for n in LOSSES if n not in losses], "loss missing from docs/distillation.md's loss table"
    export = _first_column_names((DOCS / "export.md").read_text())
    assert not [n for n in names("encoder") if n not in export], "scheme missing from docs/export.md's scheme table"
    targets = (DOCS / "export.md").read_text()
    assert not [n for n in list_targets() if f"`{n}`" not in targets], "target missing from docs/export.md"


def test_every_scheme_and_old_name_is_a_row_of_the_backends_table():
    """docs/backends.md holds the full table: every scheme (encoder and causal-LM) and every old causal-LM name."""
    rows = _first_column_names((DOCS / "backends.md").read_text())
    assert not [n for n in [*SCHEMES, *ALIASES] if n not in rows], "scheme missing from docs/backends.md's tables"


def test_readme_is_a_front_door():
    assert len(README.splitlines()) <= 300, "README.md is the front door: at most 300 lines, the reference is in docs/"
    for page in DOCS.glob("*.md"):
        assert f"(docs/{page.name})" in README, f"README's documentation map does not link docs/{page.name}"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    commands = [ln for ln in blocks[0].splitlines() if ln and not ln.startswith("#")]
    assert len(commands) == 2 and commands[0].endswith("edgedistill run")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_resolve():
    broken = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and dest.suffix == ".md":
                anchors = {_anchor(h) for h in _sections(dest.read_text())}
                if anchor not in anchors:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
