import json

import pytest

from edgedistill.data import Example, load_examples, split_examples, vader
from edgedistill.data.base import probe_labels
from edgedistill.errors import DataError
from edgedistill.recipe import DataSpec, Recipe, TeacherSpec


def recipe_at(tmp_path) -> Recipe:
    return Recipe(name="r", teacher=TeacherSpec(package="x"), source_path=tmp_path / "recipe.toml")


def test_split_is_deterministic_and_independent_of_other_examples():
    exs = [Example(id=f"d:{i}", text=f"t{i}") for i in range(2000)]
    a = split_examples(exs, [8, 1, 1])
    b = split_examples(list(reversed(exs)) + [Example(id="new:1", text="x")], [8, 1, 1])
    assert {e.id for e in a.test} <= {e.id for e in b.test}
    assert {e.id for e in a.train} <= {e.id for e in b.train}
    assert not ({e.id for e in a.train} & {e.id for e in a.test})
    assert 0.75 < len(a.train) / len(exs) < 0.85
    assert 0.07 < len(a.test) / len(exs) < 0.13


def test_empty_split_is_an_error():
    with pytest.raises(DataError, match="split is empty"):
        split_examples([Example(id="a", text="x")], [8, 1, 1])


def test_probe_labels_prefer_labels_then_score_sign():
    exs = [Example("a", "x", score=2.0), Example("b", "x", score=-0.2), Example("c", "x", score=-1.0),
           Example("d", "x", label=1, score=-3.0), Example("e", "x")]
    idx, labels = probe_labels(exs, 0.5)
    assert idx == [0, 2, 3] and labels == [1, 0, 1]
    # with the data's label vocabulary: named labels by rank, score-only rows left out
    exs = [Example("a", "x", score=2.0), Example("b", "x", label="spam"), Example("c", "x", label="ham")]
    assert probe_labels(exs, 0.5, ["ham", "spam"]) == ([1, 2], [1, 0])


def test_jsonl_csv_txt_sources(tmp_path):
    r = recipe_at(tmp_path)
    (tmp_path / "d.jsonl").write_text('{"text": "good film", "label": 1}\n\n{"text": "bad", "score": -2}\n')
    (tmp_path / "d.csv").write_text("text,label\ngood film,1\nbad film,0\n")
    (tmp_path / "d.txt").write_text("one line\n\nanother line\n")
    j = load_examples(DataSpec(source="jsonl", path="d.jsonl"), r)
    assert [(e.text, e.label, e.score) for e in j] == [("good film", 1, None), ("bad", None, -2.0)]
    c = load_examples(DataSpec(source="csv", path="d.csv"), r)
    assert [e.label for e in c] == [1, 0]
    t = load_examples(DataSpec(source="txt", path="d.txt"), r)
    assert [e.text for e in t] == ["one line", "another line"]


def test_limit_takes_a_deterministic_subset(tmp_path):
    rows = "".join(json.dumps({"text": f"s {i}"}) + "\n" for i in range(100))
    (tmp_path / "d.jsonl").write_text(rows)
    spec = DataSpec(source="jsonl", path="d.jsonl", limit=20)
    a = load_examples(spec, recipe_at(tmp_path))
    b = load_examples(spec, recipe_at(tmp_path))
    assert len(a) == 20 and [e.id for e in a] == [e.id for e in b]


@pytest.mark.parametrize("name, content, expected", [
    ("empty.jsonl", "", "no sentences in file"),
    ("blank.jsonl", "\n\n", "no sentences in file"),
    ("bad.jsonl", '{"text": "ok"}\n{"text": oops}\n', "bad.jsonl:2: not valid JSON"),
    ("list.jsonl", "[1, 2]\n", "bad"),
    ("notext.jsonl", '{"sentence": "x"}\n', "missing text field 'text'"),
    ("badlabel.jsonl", '{"text": "x", "label": 0.5}\n', "neither an integer nor a name"),
    ("badscore.jsonl", '{"text": "x", "score": "high"}\n', "must be a number"),
    ("empty.csv", "", "no rows"),
    ("empty.txt", "", "no sentences in file"),
])
def test_malformed_data_files_give_one_line_errors(tmp_path, name, content, expected):
    (tmp_path / name).write_text(content)
    src = name.rsplit(".", 1)[1]
    with pytest.raises(DataError) as e:
        load_examples(DataSpec(source=src, path=name), recipe_at(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg
    assert expected in msg or (expected == "bad" and "expected a JSON object" in msg)


def test_binary_data_file(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="not UTF-8"):
        load_examples(DataSpec(source="txt", path="b.txt"), recipe_at(tmp_path))


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_examples(DataSpec(source="jsonl", path="nope.jsonl"), recipe_at(tmp_path))


def test_vader_parser_reads_crlf_tab_rows(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"1\t2.5\tA fine film.\r\n2\t-1.25\tTabs\tinside text\r\n\r\n")
    exs = vader.parse_file(p, "movie")
    assert [(e.id, e.score, e.text) for e in exs] == [("movie:1", 2.5, "A fine film."),
                                                       ("movie:2", -1.25, "Tabs\tinside text")]
    p.write_text("1\tnot-a-number\ttext\n")
    with pytest.raises(DataError, match="x.txt:1: score 'not-a-number' is not a number"):
        vader.parse_file(p, "movie")


def test_vader_fetch_failure_is_one_clear_line(tmp_path, monkeypatch):
    class Failed:
        returncode = 1
        stderr = "WARNING: retrying\nERROR: Could not find a version that satisfies the requirement vaderSentiment"
        stdout = ""

    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))
    monkeypatch.delenv(vader.SDIST_ENV, raising=False)
    from edgedistill import fetching

    monkeypatch.setattr(fetching.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(DataError) as e:
        vader.ensure_files()
    msg = str(e.value)
    assert "\n" not in msg and "could not fetch vaderSentiment==3.3.2" in msg and "Could not find" in msg


def test_vader_corrupt_sdist_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    bad.write_bytes(b"not a tarball")
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(vader.SDIST_ENV, str(bad))
    with pytest.raises(DataError, match="sha256 .* does not match"):
        vader.ensure_files()
