import pytest

from edgedistill.fileutil import atomic_dir, write_json_atomic, write_results


def test_atomic_dir_replaces_only_on_success(tmp_path):
    dest = tmp_path / "out"
    with atomic_dir(dest) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (dest / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_dir(dest) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("boom")
    assert (dest / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_dir(dest) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in dest.iterdir()) == ["b.txt"]


def test_write_json_atomic_leaves_no_temp_files(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"a": 1})
    write_json_atomic(tmp_path / "x.json", {"a": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert (tmp_path / "x.json").read_text().strip().endswith("}")


def _enospc(*_a, **_k):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path):
    from edgedistill.errors import DiskFullError
    from edgedistill.fileutil import atomic_output, write_text_atomic

    write_text_atomic(tmp_path / "keep.txt", "old")
    with pytest.raises(DiskFullError) as e:
        with atomic_output(tmp_path / "keep.txt") as tmp:
            tmp.write_bytes(b"x" * 5000)
            _enospc()
    msg = str(e.value)
    assert str(tmp_path) in msg and "no space left" in msg and "needed at least 5 KB more" in msg and "\n" not in msg
    assert (tmp_path / "keep.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    with pytest.raises(DiskFullError):
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("half")
            _enospc()
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_interrupt_removes_the_temporary(tmp_path):
    from edgedistill.fileutil import atomic_output

    with pytest.raises(KeyboardInterrupt):
        with atomic_output(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"abc")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_writer_that_writes_nothing_is_an_error(tmp_path):
    from edgedistill.fileutil import atomic_output

    with pytest.raises(FileNotFoundError):
        with atomic_output(tmp_path / "f.bin") as tmp:
            tmp.unlink()
    assert list(tmp_path.iterdir()) == []


def _tmpfs(path, size="64k"):
    """A tiny real filesystem (root only); None where mounting is not allowed."""
    import os
    import subprocess

    if os.geteuid() != 0:
        return None
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return path if r.returncode == 0 else None


def test_a_really_full_tmpfs_keeps_the_earlier_output(tmp_path):
    import subprocess

    from edgedistill.errors import DiskFullError
    from edgedistill.fileutil import write_bytes_atomic

    mnt = _tmpfs(tmp_path / "small")
    if mnt is None:
        pytest.skip("cannot mount a tmpfs here (needs root); the patched-writer test covers the logic")
    try:
        write_bytes_atomic(mnt / "model.bin", b"1" * 20_000)
        with pytest.raises(DiskFullError, match="no space left"):
            write_bytes_atomic(mnt / "model.bin", b"2" * 200_000)
        assert (mnt / "model.bin").read_bytes() == b"1" * 20_000
        assert [p.name for p in mnt.iterdir()] == ["model.bin"]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_write_npy_atomic_round_trips_and_keeps_the_old_file_on_failure(tmp_path):
    import numpy as np

    from edgedistill.fileutil import write_npy_atomic

    path = tmp_path / "a.npy"
    arr = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert write_npy_atomic(path, arr) == path
    assert np.array_equal(np.load(path), arr) and [p.name for p in tmp_path.iterdir()] == ["a.npy"]

    class Unsaveable:
        def __array__(self, *a, **kw):
            raise ValueError("cannot become an array")

    with pytest.raises(ValueError, match="cannot become an array"):
        write_npy_atomic(path, Unsaveable())
    assert np.array_equal(np.load(path), arr) and [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_write_results_writes_the_json_and_markdown_pair(tmp_path):
    import json

    path = write_results(tmp_path / "bench", {"headline": {"x": 1}}, "# table\n")
    assert path == tmp_path / "bench.json" and json.loads(path.read_text()) == {"headline": {"x": 1}}
    assert (tmp_path / "bench.md").read_text() == "# table\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.md"]
