import zipfile

import pytest

from edgedistill.errors import DataError
from edgedistill.llm import chatterbot
from edgedistill.llm.chatterbot import ChatPrompt, load_prompts, parse_conversations, report_prompts

GREET = """categories:
- greetings
conversations:
- - Hello
  - Hi
- - How are you doing today?
  - Good.
- - Hello
  - Greetings!
"""
AI = """categories:
- AI
conversations:
- - What is AI?
  - A field of science.
- - Are you sentient?
  - Sort of.
  - Really?
"""


def _wheel(tmp_path, files):
    path = tmp_path / "chatterbot_corpus-test.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(f"chatterbot_corpus/data/english/{name}", text)
    return path


def test_parse_conversations_by_hand():
    convs = parse_conversations(AI, "ai.yml")
    assert convs == [["What is AI?", "A field of science."], ["Are you sentient?", "Sort of.", "Really?"]]


@pytest.mark.parametrize("text,msg", [("conversations: [unclosed", "not valid YAML"),
                                      ("categories: [x]\n", "top-level 'conversations' list")])
def test_bad_yaml_is_a_one_line_error(text, msg):
    with pytest.raises(DataError, match=msg) as e:
        parse_conversations(text, "bad.yml")
    assert "bad.yml" in str(e.value) and "\n" not in str(e.value)


def test_prompts_are_distinct_first_turns_in_file_order(tmp_path):
    prompts = load_prompts(_wheel(tmp_path, {"greetings.yml": GREET, "ai.yml": AI}))
    assert prompts == [ChatPrompt("ai", "What is AI?"), ChatPrompt("ai", "Are you sentient?"),
                       ChatPrompt("greetings", "Hello"), ChatPrompt("greetings", "How are you doing today?")]
    # one per topic, at least 3 words
    assert report_prompts(prompts, n=5) == [ChatPrompt("ai", "What is AI?"),
                                            ChatPrompt("greetings", "How are you doing today?")]


def test_a_wheel_without_corpus_files_or_not_a_zip(tmp_path):
    with pytest.raises(DataError, match="no chatterbot_corpus/data/english"):
        load_prompts(_wheel(tmp_path, {}))
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read the wheel"):
        load_prompts(junk)


def test_failed_fetch_is_one_line_naming_the_override(tmp_path, monkeypatch):
    monkeypatch.delenv(chatterbot.WHEEL_ENV, raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(DataError) as e:
        chatterbot.fetch_wheel(tmp_path)
    msg = str(e.value)
    assert "could not fetch chatterbot-corpus==1.3.3" in msg and chatterbot.WHEEL_ENV in msg and "\n" not in msg


def test_local_override_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv(chatterbot.WHEEL_ENV, str(tmp_path / "missing.whl"))
    with pytest.raises(DataError, match="file not found"):
        chatterbot.fetch_wheel()
    other = _wheel(tmp_path, {"ai.yml": AI})
    monkeypatch.setenv(chatterbot.WHEEL_ENV, str(other))
    with pytest.raises(DataError, match="does not match the expected"):
        chatterbot.fetch_wheel()
