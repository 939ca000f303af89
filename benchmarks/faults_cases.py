"""The cases of benchmarks/faults.py: each builds one bad input (or one fault) and returns the CLI argv."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conftest import build_tiny_bert, make_tiny_bundle, synthetic_rows, tiny_recipe, write_jsonl

from edgedistill.targets import builtin_dir


CHECKPOINT_EVERY = 4


class Skip(Exception):
    """This case cannot run on this machine (e.g. no tmpfs without root)."""


@dataclass
class Fixtures:
    root: Path
    teacher: Path
    data: Path
    bundle: Path
    keys: dict = field(default_factory=dict)
    _reference: Path | None = None

    @classmethod
    def build(cls, root: Path) -> Fixtures:
        from edgedistill.api import keygen
        from edgedistill.export.bundle import write_zip

        root.mkdir(parents=True)
        teacher = build_tiny_bert(root / "teacher")
        data = write_jsonl(root / "rows.jsonl", synthetic_rows(200))
        bundle = make_tiny_bundle(teacher, root / "b")
        write_zip(bundle)
        mine, other = keygen(root / "mine.pem"), keygen(root / "other.pem")
        return cls(root, teacher, data, bundle, {"private": mine[0], "public": mine[1], "other": other[0]})

    def populate(self, work: Path) -> None:
        """The case's folder, with an earlier good output in it that no refused command may touch."""
        work.mkdir(parents=True)
        shutil.copytree(self.bundle, work / "earlier" / "bundle")
        shutil.copy(self.bundle.with_suffix(".zip"), work / "earlier" / "bundle.zip")

    def recipe(self, work: Path, data_file: Path | None = None, **sections) -> Path:
        sections.setdefault("distill", {})
        sections["distill"] = {"max_steps": 12, "eval_every": 4, "checkpoint_every": CHECKPOINT_EVERY,
                               **sections["distill"]}
        return tiny_recipe(work, self.teacher, data_file or self.data, **sections)

    def reference_student(self, cli) -> Path:
        """An uninterrupted tiny distillation, the yardstick of the resume cases (built once)."""
        if self._reference is None:
            work = self.root / "reference"
            work.mkdir()
            r = cli(["distill", str(self.recipe(work)), "-o", str(work / "run")], work)
            if r.returncode != 0:
                raise RuntimeError(f"reference distillation failed: {r.stderr[-500:]}")
            self._reference = work / "run" / "student"
        return self._reference


@dataclass
class Case:
    group: str
    name: str
    setup: Callable[[Path, Fixtures], list[str]]
    expect: str = ""
    refuse: bool = True
    env: dict = field(default_factory=dict)
    may_change: tuple[str, ...] = ()
    check: Callable | None = None
    recover: Callable | None = None
    cleanup: Callable | None = None


CASES: list[Case] = []


def case(group: str, expect: str = "", **kw):
    def deco(fn):
        CASES.append(Case(group, fn.__name__, fn, expect, **kw))
        return fn
    return deco


def _distill(work: Path, recipe: Path) -> list[str]:
    return ["distill", str(recipe), "-o", str(work / "run")]


def _text_recipe(work: Path, fx: Fixtures, text: str | bytes) -> list[str]:
    p = work / "recipe.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return _distill(work, p)


def _edit_recipe(work: Path, fx: Fixtures, old: str, new: str, **sections) -> list[str]:
    p = fx.recipe(work, **sections)
    text = p.read_text()
    assert old in text, old
    p.write_text(text.replace(old, new))
    return _distill(work, p)


# ---- recipes -----------------------------------------------------------------------------------------
@case("recipe", "unknown key 'maxsteps'")
def recipe_unknown_key(w, fx): return _edit_recipe(w, fx, "max_steps = 12", "maxsteps = 12")
@case("recipe", "expected an integer")
def recipe_wrong_type(w, fx): return _edit_recipe(w, fx, "max_steps = 12", 'max_steps = "12"')
@case("recipe", "learning_rate")
def recipe_negative_learning_rate(w, fx): return _edit_recipe(w, fx, "learning_rate = 0.001", "learning_rate = -1.0")
@case("recipe", "not valid TOML")
def recipe_bad_toml(w, fx): return _text_recipe(w, fx, "name = \n")
@case("recipe", "not valid TOML")
def recipe_not_utf8(w, fx): return _text_recipe(w, fx, b"name = \"\xff\xfe\"\n")
@case("recipe", "missing required section [teacher]")
def recipe_no_teacher(w, fx): return _text_recipe(w, fx, 'name = "x"\n')
@case("recipe", "unknown target 'toaster'")
def recipe_unknown_target(w, fx): return _edit_recipe(w, fx, 'targets = ["phone"]', 'targets = ["phone", "toaster"]')
@case("recipe", "nope")
def recipe_unknown_loss(w, fx): return _edit_recipe(w, fx, "max_steps = 12", "losses = {nope = 1.0}\nmax_steps = 12")
@case("recipe", "frobnicate")
def recipe_unknown_strategy(w, fx): return _edit_recipe(w, fx, "max_steps = 12", 'strategy = "frobnicate"\nmax_steps = 12')
@case("recipe", "layers")
def recipe_layer_out_of_range(w, fx): return _edit_recipe(w, fx, "layers = [0, 3]", "layers = [0, 9]")
@case("recipe", "split")
def recipe_bad_split(w, fx): return _edit_recipe(w, fx, 'source = "jsonl"', 'source = "jsonl"\nsplit = [8, 2]')
@case("recipe", "file not found")
def recipe_missing_file(w, fx): return _distill(w, w / "missing.toml")
@case("recipe", "")
def recipe_is_a_directory(w, fx): return _distill(w, w / "earlier")
@case("recipe", "key 'name'")
def recipe_bad_name(w, fx): return _edit_recipe(w, fx, 'name = "tiny"', 'name = "../x"')
@case("recipe", "recipe_version")
def recipe_future_version(w, fx): return _edit_recipe(w, fx, 'name = "tiny"', 'name = "tiny"\nrecipe_version = 9')
@case("recipe", "unknown model 'student-tflite'")
def recipe_unknown_bench_model(w, fx): return _edit_recipe(w, fx, "repeats = 1", 'repeats = 1\nmodels = ["student-tflite"]')
@case("recipe", "")
def recipe_empty_file(w, fx): return _text_recipe(w, fx, "")


def _bad_target(work: Path, old: str, new: str) -> Path:
    text = (builtin_dir() / "phone.toml").read_text()
    assert old in text, old
    p = work / "mine.toml"
    p.write_text(text.replace(old, new))
    return p


@case("recipe", "[export] key 'targets'")
def recipe_names_a_bad_target_file(w, fx):
    _bad_target(w, "p_cpu = { value = 6.3, lo = 4.4", "p_cpu = { value = -6.3, lo = -8")
    return _edit_recipe(w, fx, 'targets = ["phone"]', 'targets = ["mine.toml"]')


# ---- targets -----------------------------------------------------------------------------------------
def _target(w, old, new): return ["targets", "show", str(_bad_target(w, old, new))]
@case("target", "expected 0.001..500 W, got -6.3 W")
def target_negative_power(w, fx): return _target(w, "p_cpu = { value = 6.3, lo = 4.4", "p_cpu = { value = -6.3, lo = -8")
@case("target", "peak_int8_dot")
def target_negative_peak(w, fx): return _target(w, "peak_int8_dot = { value = 513", "peak_int8_dot = { value = -513")
@case("target", "unknown constant 'llc_efective'")
def target_misspelt_constant(w, fx): return _target(w, "llc_effective = {", "llc_efective = {")
@case("target", "key 'unit'")
def target_wrong_unit(w, fx): return _target(w, 'unit = "GB/s"', 'unit = "MB/s"')
@case("target", "threads")
def target_zero_threads(w, fx): return _target(w, "threads = 4", "threads = 0")
@case("target", "missing required constant 'e_bit'")
def target_missing_constant(w, fx): return _target(w, "e_bit = {", "x_bit = {")
@case("target", "source 'R99'")
def target_bad_source(w, fx): return _target(w, 'source = "R50"', 'source = "R99"')
@case("target", "not valid TOML")
def target_not_toml(w, fx): return _target(w, "[device]", "[device")
@case("target", "unknown target 'toaster'")
def target_unknown_name(w, fx): return ["targets", "show", "toaster"]


# ---- data files --------------------------------------------------------------------------------------
def _data(w, fx, name: str, content: bytes, source: str | None = None):
    p = w / name
    p.write_bytes(content)
    r = fx.recipe(w, data_file=p)
    r.write_text(r.read_text().replace('source = "jsonl"', f'source = "{source or name.rsplit(".", 1)[1]}"'))
    return _distill(w, r)


@case("data", "no sentences")
def data_empty_jsonl(w, fx): return _data(w, fx, "d.jsonl", b"\n\n")
@case("data", "not UTF-8")
def data_non_utf8_csv(w, fx): return _data(w, fx, "d.csv", b"text,label\n\xff\xfe bad,1\n")
@case("data", "not valid JSON")
def data_broken_json_line(w, fx): return _data(w, fx, "d.jsonl", b'{"text": "fine", "label": 1}\n{"text": \n')
@case("data", "missing text field")
def data_missing_text_field(w, fx): return _data(w, fx, "d.jsonl", b'{"sentence": "fine", "label": 1}\n')
@case("data", "data file not found")
def data_missing_file(w, fx): return _distill(w, fx.recipe(w, data_file=w / "nope.jsonl"))
@case("data", "no rows")
def data_csv_header_only(w, fx): return _data(w, fx, "d.csv", b"text,label\n")
@case("data", "no sentences")
def data_txt_empty(w, fx): return _data(w, fx, "d.txt", b"   \n\n")
@case("data", "must be a number")
def data_score_not_a_number(w, fx): return _data(w, fx, "d.jsonl", b'{"text": "fine", "score": "high"}\n')
@case("data", "expected a JSON object")
def data_jsonl_not_objects(w, fx): return _data(w, fx, "d.jsonl", b"[1, 2]\n")


# ---- models ------------------------------------------------------------------------------------------
def _teacher_copy(w, fx, keep=lambda name: True) -> Path:
    t = w / "teacher"
    shutil.copytree(fx.teacher, t, ignore=lambda d, names: [n for n in names if not keep(n)])
    return t


def _with_teacher(w, fx, teacher: Path) -> list[str]:
    p = fx.recipe(w)
    p.write_text(p.read_text().replace(str(fx.teacher), str(teacher)))
    return _distill(w, p)


@case("model", "teacher folder not found")
def teacher_missing_folder(w, fx): return _with_teacher(w, fx, w / "nope")
@case("model", "vocabulary files")
def teacher_without_tokenizer(w, fx):
    return _with_teacher(w, fx, _teacher_copy(w, fx, lambda n: n in ("config.json", "model.safetensors")))
@case("model", "pickle")
def teacher_pickled_weights_only(w, fx):
    t = _teacher_copy(w, fx, lambda n: n != "model.safetensors")
    (t / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return _with_teacher(w, fx, t)
@case("model", "cannot load")
def teacher_truncated_safetensors(w, fx):
    t = _teacher_copy(w, fx)
    data = (t / "model.safetensors").read_bytes()
    (t / "model.safetensors").write_bytes(data[: len(data) // 2])
    return _with_teacher(w, fx, t)
@case("model", "no config.json")
def teacher_without_config(w, fx): return _with_teacher(w, fx, _teacher_copy(w, fx, lambda n: n != "config.json"))
@case("model", "")
def export_student_is_not_a_model(w, fx):
    (w / "junk").mkdir()
    (w / "junk" / "config.json").write_text("{}")
    return ["export", str(fx.recipe(w)), "-o", str(w / "run"), "--student", str(w / "junk")]


# ---- bundles -----------------------------------------------------------------------------------------
def _bundle(w) -> Path:
    return w / "earlier" / "bundle"


def _flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


def _work_bundle(w, fx) -> Path:
    b = w / "b"
    shutil.copytree(fx.bundle, b)
    return b


def _manifest(b: Path, **changes) -> None:
    m = json.loads((b / "manifest.json").read_text())
    m.update(changes)
    (b / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


@case("bundle", "sha256 does not match")
def bundle_flipped_byte_folder(w, fx):
    b = _work_bundle(w, fx)
    _flip(b / "model.onnx")
    return ["bundle", "verify", str(b)]
@case("bundle", "damaged zip member")
def bundle_flipped_byte_zip(w, fx):
    z = w / "b.zip"
    shutil.copy(fx.bundle.with_suffix(".zip"), z)
    with zipfile.ZipFile(z) as f:
        info = f.getinfo("model.onnx")
    data = bytearray(z.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
    z.write_bytes(bytes(data))
    return ["predict", "--bundle", str(z), "hello"]
@case("bundle", "")
def bundle_truncated_zip(w, fx):
    z = w / "b.zip"
    z.write_bytes(fx.bundle.with_suffix(".zip").read_bytes()[:3000])
    return ["bundle", "verify", str(z)]
@case("bundle", "is not the expected")
def bundle_edited_manifest_against_a_pinned_id(w, fx):
    from edgedistill.runtime import verify_bundle

    pinned = verify_bundle(fx.bundle)["bundle_id"]
    b = _work_bundle(w, fx)
    _manifest(b, max_length=4)
    return ["predict", "--bundle", str(b), "--expect-id", pinned, "hello"]
@case("bundle", "bundle format 1 is not supported")
def bundle_unknown_format_version(w, fx):
    b = _work_bundle(w, fx)
    _manifest(b, format_version=1)
    return ["bundle", "verify", str(b)]
@case("bundle", "is missing")
def bundle_missing_file(w, fx):
    b = _work_bundle(w, fx)
    (b / "tokenizer.json").unlink()
    return ["bundle", "verify", str(b)]
@case("bundle", "is not listed")
def bundle_extra_file(w, fx):
    b = _work_bundle(w, fx)
    (b / "extra.bin").write_bytes(b"x")
    return ["bundle", "verify", str(b)]
@case("bundle", "")
def bundle_zip_member_escapes(w, fx):
    z = w / "evil.zip"
    with zipfile.ZipFile(z, "w") as f:
        for p in fx.bundle.iterdir():
            f.write(p, p.name)
        f.writestr("../escaped.txt", "gotcha")
    return ["bundle", "verify", str(z)]
@case("bundle", "not a bundle")
def bundle_empty_folder(w, fx):
    (w / "empty").mkdir()
    return ["bundle", "verify", str(w / "empty")]
@case("bundle", "not a sha256")
def bundle_malformed_expected_id(w, fx): return ["predict", "--bundle", str(fx.bundle), "--expect-id", "abc", "hi"]
@case("bundle", "bad signature")
def bundle_signed_by_another_key(w, fx):
    from edgedistill.api import sign_bundle

    b = _work_bundle(w, fx)
    sign_bundle(b, fx.keys["other"])
    return ["bundle", "verify", str(b), "--public-key", str(fx.keys["public"])]
@case("bundle", "not signed")
def bundle_unsigned_with_a_key(w, fx): return ["bundle", "verify", str(fx.bundle), "--public-key", str(fx.keys["public"])]
@case("bundle", "")
def bundle_model_not_a_model(w, fx):
    from edgedistill.fileutil import sha256_file

    b = _work_bundle(w, fx)
    (b / "model.onnx").write_bytes(b"this is not an onnx graph")
    m = json.loads((b / "manifest.json").read_text())
    m["files"]["model.onnx"] = {"sha256": sha256_file(b / "model.onnx"), "bytes": 25}
    _manifest(b, files=m["files"])
    return ["predict", "--bundle", str(b), "hello"]
@case("bundle", "unreadable manifest")
def bundle_manifest_not_json(w, fx):
    b = _work_bundle(w, fx)
    (b / "manifest.json").write_text("{not json")
    return ["bundle", "verify", str(b)]
@case("bundle", "key 'backend' must be a string")
def bundle_manifest_wrong_types(w, fx):
    b = _work_bundle(w, fx)
    _manifest(b, backend=[])
    return ["predict", "--bundle", str(b), "hello"]
@case("bundle", "twice")
def bundle_zip_with_a_duplicate(w, fx):
    import warnings

    z = w / "dup.zip"
    with zipfile.ZipFile(z, "w") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in fx.bundle.iterdir():
            f.write(p, p.name)
        f.writestr("manifest.json", "{}")
    return ["bundle", "verify", str(z)]
@case("bundle", "")
def bundle_sign_a_zip(w, fx): return ["bundle", "sign", str(fx.bundle.with_suffix(".zip")), "--key", str(fx.keys["private"])]


# ---- command line ------------------------------------------------------------------------------------
@case("cli", "--threads")
def predict_negative_threads(w, fx): return ["predict", "--bundle", str(fx.bundle), "--threads", "-3", "hi"]
@case("cli", "not an LLM recipe")
def llm_distill_on_an_encoder_recipe(w, fx): return ["llm", "distill", str(fx.recipe(w)), "-o", str(w / "run")]
@case("cli", "positive integers")
def llm_bench_bad_threads(w, fx): return ["llm", "bench", str(fx.bundle), "--threads", "0"]
@case("cli", "")
def generate_on_an_embedding_bundle(w, fx): return ["generate", "--bundle", str(fx.bundle), "hello"]
@case("cli", "")
def bench_a_model_that_is_not_one(w, fx):
    (w / "junk.txt").write_text("x")
    return ["bench", "--model", str(w / "junk.txt"), "-o", str(w / "run")]
@case("cli", "int3")
def export_unknown_scheme(w, fx):
    return ["export", str(fx.recipe(w)), "-o", str(w / "run"), "--student", str(fx.teacher), "--quant", "int3"]
@case("cli", "")
def keygen_over_an_existing_key(w, fx):
    shutil.copy(fx.keys["private"], w / "k.pem")
    return ["bundle", "keygen", str(w / "k.pem")]


# ---- injected faults: kill -9, full disk -------------------------------------------------------------
def _same_student(a: Path, b: Path) -> str:
    from safetensors.numpy import load_file

    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    worst = max(float(abs(x[k] - y[k]).max()) for k in x)
    return "" if worst <= 1e-5 else f"resumed student differs from an uninterrupted run (max abs {worst:.2e})"


def _resume_after(exit_after: int):
    def recover(w, fx, argv):
        from faults import cli

        ref = fx.reference_student(cli)
        r1 = cli(argv, w, {"EDGEDISTILL_TEST_EXIT_AFTER_STEPS": str(exit_after)})
        if r1.returncode != 75:
            return f"the injected kill did not happen (rc {r1.returncode})"
        if (w / "run" / "student" / "model.safetensors").exists():
            return "a killed run left a student a later stage would accept"
        r2 = cli(argv, w)
        if r2.returncode != 0:
            return f"re-run failed: {r2.stderr.strip()[-200:]}"
        saved = exit_after - exit_after % CHECKPOINT_EVERY
        if saved and f"resuming from step {saved}" not in r2.stderr + r2.stdout:
            return f"re-run did not resume from the checkpoint of step {saved}"
        return _same_student(ref, w / "run" / "student")
    return recover


def _distill_setup(w, fx): return _distill(w, fx.recipe(w))


for _step in (3, 6, 9):  # before the first checkpoint (a clean restart), and after one and two
    CASES.append(Case("fault", f"distill_killed_at_step_{_step}_recovers", _distill_setup, refuse=False,
                      recover=_resume_after(_step)))


def _sigkill_then_rerun(after_s: float, verify):
    def recover(w, fx, argv):
        from faults import cli, killed  # noqa: F401

        killed(argv, w, after_s)
        r = cli(argv, w)
        if r.returncode != 0:
            return f"re-run after kill -9 failed: {r.stderr.strip()[-200:]}"
        return verify(w, fx)
    return recover


def _verify_bundle(w, fx) -> str:
    from faults import cli

    r = cli(["bundle", "verify", str(w / "run" / "bundles" / "phone")], w)
    return "" if r.returncode == 0 else f"bundle after kill + re-run does not verify: {r.stderr.strip()[-200:]}"


def _export_setup(w, fx): return ["export", str(fx.recipe(w)), "-o", str(w / "run"), "--student", str(fx.teacher)]


for _t in (2.0, 6.0):
    CASES.append(Case("fault", f"export_sigkill_after_{_t:.0f}s_then_rerun", _export_setup, refuse=False,
                      recover=_sigkill_then_rerun(_t, _verify_bundle)))
def _et_export_setup(w, fx): return _export_setup(w, fx) + ["--quant", "et-int8"]


def _bench_setup(w, fx):
    return ["bench", "--model", str(fx.bundle), "--teacher", str(fx.teacher), "--target", "phone",
            str(fx.recipe(w)), "-o", str(w / "run")]


def _report_ok(w, fx) -> str:
    p = w / "run" / "report" / "report.json"
    try:
        return "" if json.loads(p.read_text())["models"] else "empty report after kill + re-run"
    except (OSError, ValueError, KeyError) as e:
        return f"no readable report after kill + re-run ({e})"


for _t in (4.0, 12.0):
    CASES.append(Case("fault", f"export_executorch_sigkill_after_{_t:.0f}s_then_rerun", _et_export_setup,
                      refuse=False, recover=_sigkill_then_rerun(_t, _verify_bundle)))
    CASES.append(Case("fault", f"bench_sigkill_after_{_t:.0f}s_then_rerun", _bench_setup, refuse=False,
                      recover=_sigkill_then_rerun(_t, _report_ok)))
CASES.append(Case("fault", "distill_sigkill_after_5s_then_rerun", _distill_setup, refuse=False,
                  recover=_sigkill_then_rerun(5.0, lambda w, fx: "" if (w / "run" / "student" / "config.json").is_file()
                                              else "no student after the re-run")))


def _tmpfs(w: Path, size: str) -> Path:
    import os

    if os.geteuid() != 0:
        raise Skip("mounting a tmpfs needs root")
    mnt = w / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True).returncode:
        raise Skip("cannot mount a tmpfs here")
    return mnt


def _unmount(w, fx):
    subprocess.run(["umount", str(w / "small")], check=False)


@case("disk", "no space left", cleanup=_unmount)
def disk_full_during_export(w, fx):
    mnt = _tmpfs(w, "160k")
    (mnt / "keep.txt").write_text("earlier output")
    return ["export", str(fx.recipe(w)), "-o", str(mnt / "run"), "--student", str(fx.teacher)]


@case("disk", "no space left", cleanup=_unmount)
def disk_full_during_zip(w, fx):
    from edgedistill.fileutil import dir_size

    mnt = _tmpfs(w, f"{dir_size(fx.bundle) // 1024 + 64}k")
    shutil.copytree(fx.bundle, mnt / "b")
    free = shutil.disk_usage(mnt).free
    (mnt / "filler").write_bytes(b"\0" * max(0, free - 8192))  # room for the signature, not for the zip
    return ["bundle", "sign", str(mnt / "b"), "--key", str(fx.keys["private"]), "--zip"]
