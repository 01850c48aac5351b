"""Reading conversations and preference pairs: both shapes, and the bad-record rule (counted and
skipped with file:line, or raised with file:line in strict mode)."""

import json

import pytest

from lmforge.align.conversations import ChatDataError, Skipped, read_conversations, read_pairs


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def test_openai_and_sharegpt_shapes_give_the_same_messages(tmp_path):
    share = {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hi"},
                               {"from": "gpt", "value": "hello"}]}
    convs = read_conversations(write(tmp_path / "c.jsonl", [GOOD, share]), strict=True)
    assert convs[0] == GOOD["messages"]
    assert convs[1] == [{"role": "system", "content": "be brief"}, *GOOD["messages"]]


@pytest.mark.parametrize("bad, reason", [
    ("{not json", "not JSON"),
    ({"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]}, "missing role"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}, "empty assistant turn"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
    ({"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]}, "unknown role"),
    ({"text": "hi"}, "no 'messages'"),
])
def test_bad_conversations_are_counted_and_skipped_or_raised_with_file_and_line(tmp_path, bad, reason):
    path = write(tmp_path / "c.jsonl", [GOOD, bad, GOOD])
    skipped = Skipped()
    assert len(read_conversations(path, skipped=skipped)) == 2
    assert skipped.total == 1 and skipped.places[0].startswith(f"{path}:2: ") and reason in skipped.places[0]
    with pytest.raises(ChatDataError, match=f"{path}:2: .*{reason}"):
        read_conversations(path, strict=True)


def test_a_file_of_only_bad_records_is_an_error(tmp_path):
    with pytest.raises(ChatDataError, match="all 2 records are bad"):
        read_conversations(write(tmp_path / "c.jsonl", ["{x", {"y": 1}]))
    with pytest.raises(ChatDataError, match="no such file"):
        read_conversations(tmp_path / "missing.jsonl")


def test_pairs_identical_answers_are_refused_and_prompts_may_be_strings_or_messages(tmp_path):
    rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "5", "domain": "arithmetic"},
            {"prompt": [{"role": "user", "content": "hi"}], "chosen": "hello", "rejected": "go away"},
            {"prompt": "same?", "chosen": "yes", "rejected": " yes "},
            {"prompt": "missing"}]
    skipped = Skipped()
    pairs = read_pairs(write(tmp_path / "p.jsonl", rows), skipped=skipped)
    assert [p.chosen for p in pairs] == ["4", "hello"]
    assert pairs[0].prompt == [{"role": "user", "content": "2+2?"}] and pairs[0].domain == "arithmetic"
    assert skipped.counts == {"identical pair": 1, "missing field": 1}
    with pytest.raises(ChatDataError, match=r"p.jsonl:3: identical pair"):
        read_pairs(tmp_path / "p.jsonl", strict=True)
