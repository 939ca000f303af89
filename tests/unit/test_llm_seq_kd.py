import numpy as np
import pytest
from llm_tiny import tiny_llama

from edgedistill.errors import DataError
from edgedistill.llm.on_policy import sample_continuation
from edgedistill.llm.seq_kd import pack_sequences, teacher_continuations

PROMPTS = [[4, 5, 6], [7, 8], [9, 10, 11, 12]]


def _gen(teacher, root, **kw):
    args = dict(teacher_sha="a" * 64, tokenizer_sha="tok", gen_tokens=5, temperature=0.0, seed=0, root=root)
    return teacher_continuations(teacher, PROMPTS, **(args | kw))


def test_continuations_are_cached_and_reused(tmp_path):
    teacher = tiny_llama(layers=2, seed=9)
    first = _gen(teacher, tmp_path)
    assert first.generated == 3 and [len(s) for s in first.sequences] == [8, 7, 9]
    assert first.sequences[0] == sample_continuation(teacher, PROMPTS[0], 5, 0.0)
    again = _gen(teacher, tmp_path)
    assert again.generated == 0 and again.sequences == first.sequences and again.folder == first.folder


def test_a_changed_input_or_damaged_file_is_never_read(tmp_path):
    teacher = tiny_llama(layers=2, seed=9)
    first = _gen(teacher, tmp_path)
    for change in ({"gen_tokens": 4}, {"teacher_sha": "b" * 64}, {"temperature": 1.0}):
        other = _gen(teacher, tmp_path, **change)
        assert other.generated == 3 and other.folder != first.folder
    (first.folder / "sequences.json").write_text("[[1, 2, 3]]")  # tampered: fails its sha256
    redo = _gen(teacher, tmp_path)
    assert redo.generated == 3 and redo.sequences == first.sequences


def test_pack_sequences_by_hand():
    out = pack_sequences([[1, 2], [3]], eos=9, block_size=2)
    assert out.tolist() == [[1, 2], [9, 3]] and out.dtype == np.int32
    with pytest.raises(DataError, match="fewer than one block of 8"):
        pack_sequences([[1]], eos=9, block_size=8)
    with pytest.raises(DataError, match="at least one prompt"):
        teacher_continuations(None, [], teacher_sha="a", tokenizer_sha="t", gen_tokens=2)
