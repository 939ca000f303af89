"""Variants of one encoder recipe at one training budget, scored on their exported int8 files.

    python benchmarks/recipe_ab.py --recipe examples/headline.toml --steps 3000 --out runs/ab \\
        --variant 'pair:distill.losses={cosine = 1.0, pair_similarity = 1.0}' \\
        --variant 'brown:data.extra_texts=["brown", "chatterbot"]' --variant 'brown:data.extra_texts_limit=20000'

Each ``--variant NAME:SECTION.KEY=TOML_VALUE`` changes one key of the recipe (repeat a NAME to change
several); ``--baseline`` also runs the recipe unchanged. Every variant is distilled, exported with
one ONNX scheme (``--scheme``, default int8-dynamic) and scored like ``benchmarks/qad.py`` scores its
two arms: Spearman of pairwise
cosines with the teacher's (and the cosine when the widths match) on validation sentences, and a
sentiment probe fitted on the file's own embeddings (validation accuracy to choose by, test accuracy
to report). A quicker way than a full ``headline.py`` bench to choose a student on validation; its
figures are quality only (nothing is timed). Writes OUT/recipe_ab.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from qad import at_steps, distil_and_score  # noqa: E402


def parse_variants(specs: list[str]) -> dict[str, dict[tuple[str, str], object]]:
    """``NAME:SECTION.KEY=TOML_VALUE`` strings -> {name: {(section, key): value}} in the order given."""
    out: dict[str, dict[tuple[str, str], object]] = {}
    for spec in specs:
        name, sep, assignment = spec.partition(":")
        path, eq, value = assignment.partition("=")
        section, dot, key = path.strip().partition(".")
        if not (sep and eq and dot and name.strip() and section and key):
            raise SystemExit(f"--variant {spec!r}: expected NAME:SECTION.KEY=TOML_VALUE, e.g. "
                             "'pair:distill.losses={cosine = 1.0, pair_similarity = 1.0}'")
        try:
            parsed = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError as e:
            raise SystemExit(f"--variant {spec!r}: the value is not TOML ({e})") from None
        out.setdefault(name.strip(), {})[(section, key)] = parsed
    return out


def variant_recipe(base_path: Path, changes: dict[tuple[str, str], object], dest: Path) -> Path:
    """The base recipe file with ``changes`` applied, written beside the variant's run (the parser validates it)."""
    table = tomllib.loads(base_path.read_text())
    for (section, key), value in changes.items():
        table.setdefault(section, {})[key] = value
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / base_path.name
    path.write_text(dumps_toml(table))
    return path


def dumps_toml(table: dict) -> str:
    """Minimal TOML writer for recipe tables (strings, numbers, booleans, lists and inline tables)."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"cannot write {v!r} as TOML")

    top = [f"{k} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    sections = [f"\n[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
                for k, v in table.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "examples" / "headline.toml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "recipe-ab"))
    ap.add_argument("--steps", type=int, default=None, help="training steps of every variant (default: the recipe's)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:SECTION.KEY=TOML_VALUE")
    ap.add_argument("--baseline", action="store_true", help="also run the recipe unchanged (as 'baseline')")
    ap.add_argument("--scheme", default="int8-dynamic", help="the ONNX export scheme every variant is scored in")
    args = ap.parse_args(argv)
    from edgedistill.fileutil import write_text_atomic
    from edgedistill.recipe import load_recipe

    variants = ({"baseline": {}} if args.baseline else {}) | parse_variants(args.variant)
    if not variants:
        raise SystemExit("nothing to run: give --variant NAME:SECTION.KEY=VALUE and/or --baseline")
    out, base = Path(args.out), Path(args.recipe)
    result = {"recipe": str(base), "steps": args.steps, "command": "python benchmarks/recipe_ab.py "
              + " ".join(sys.argv[1:] if argv is None else argv), "measured": time.strftime("%Y-%m-%d"), "variants": {}}
    for name, changes in variants.items():
        path = variant_recipe(base, changes, out / name) if changes else base
        recipe = at_steps(load_recipe(path), args.steps)
        scores = distil_and_score(recipe, out / name, args.scheme)
        result["variants"][name] = {"scheme": args.scheme,
                                    "changes": {f"{s}.{k}": v for (s, k), v in changes.items()}, **scores}
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "recipe_ab.json", json.dumps(result, indent=2) + "\n")  # each variant as it ends
        print(json.dumps({name: result["variants"][name]}, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
