"""Checkable chat tasks: every checker agrees with the reference, wrong and malformed answers, never
raises, and the splits are deterministic, disjoint and free of duplicates."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.align import tasks as tasks_module
from lmforge.align.tasks import (
    DOMAINS, NAMES, TASKS, WORDS, ZH_PHRASES, ZH_WORDS, Example, Task, accuracy, check, make_examples, split_of)

PER_TASK = 200


@pytest.fixture(scope="module")
def examples_by_task() -> dict[str, list[Example]]:
    return {name: make_examples(PER_TASK, seed=3, split="train", tasks=[name])
            + make_examples(PER_TASK // 4, seed=3, split="test", tasks=[name]) for name in TASKS}


def test_all_tasks_are_registered_under_their_names_and_domains():
    assert list(TASKS) == ["add", "sort", "reverse", "copy", "count", "json", "zh", "first_word"]
    for name, task in TASKS.items():
        assert task.name == name and task.domain in DOMAINS
    assert {task.domain for task in TASKS.values()} == set(DOMAINS)


@pytest.mark.parametrize("name", list(TASKS))
def test_reference_wrong_and_malformed_answers_get_their_verdicts(name, examples_by_task):
    rng = random.Random(0)
    for example in examples_by_task[name]:
        assert example.task == name
        assert check(example, example.answer) == "correct", example
        assert check(example, f"  {example.answer}\n<|im_end|>") == "correct", example
        wrong, malformed = TASKS[name].wrong(example, rng), TASKS[name].malformed(example, rng)
        assert check(example, wrong) == "wrong", (example, wrong)
        assert check(example, malformed) == "malformed", (example, malformed)


@pytest.mark.parametrize("name", list(TASKS))
def test_prompts_and_answers_are_short(name, examples_by_task):
    for example in examples_by_task[name]:
        assert 0 < len(example.prompt) < 200
        assert example.answer and "\n" not in example.answer and len(example.answer) < 60


def test_word_lists_have_the_promised_shape():
    assert all(word.isascii() and word.isalpha() and word.islower() and 3 <= len(word) <= 6 for word in WORDS)
    assert all(name.isalpha() and name.islower() for name in NAMES)
    assert all(all("\u4e00" <= ch <= "\u9fff" for ch in text) for text in ZH_WORDS + ZH_PHRASES)


@pytest.mark.parametrize(("example", "right", "wrong", "malformed"), [
    (Example("add", "What is 12 + 7?", "19", {"a": 12, "b": 7}), ["19", " 19\n", "019"], ["18", "-19"],
     ["nineteen", "the answer is 19", "19.0", "+19", "1 9", ""]),
    (Example("sort", "Put in ascending order: 5 3 9", "3 5 9", {"numbers": [5, 3, 9]}), ["3 5 9", "3  5\t9"],
     ["9 5 3", "3 5", "3 5 9 9"], ["3, 5, 9", "[3 5 9]", "three five nine", ""]),
    (Example("reverse", "Reverse the word: apple", "elppa", {"word": "apple"}), ["elppa"], ["apple"],
     ["ELPPA", "e l p p a", "elppa."]),
    (Example("copy", "Say cat twice.", "cat cat", {"word": "cat", "n": 2}), ["cat cat", "cat\ncat"],
     ["cat", "cat cat cat", "catcat"], ["cat, cat", "Cat cat", "2"]),
    (Example("json", 'Answer in JSON with key "len": how many letters are in "apple"?', '{"len": 5}',
             {"key": "len", "value": 5}), ['{"len": 5}', '{"len":5}'], ['{"len": 4}', '{"len": "5"}', '{"len": true}'],
     ["5", '{"len": 5, "x": 1}', "[5]", "{len: 5}", '{"length": 5}', "{}"]),
    (Example("zh", "把这个词重复两遍：中国", "中国中国", {"kind": "repeat", "text": "中国", "n": 2}),
     ["中国中国", "中国 中国"], ["中国", "中国中国中国"], ["答案：中国中国", "zhongguo", ""]),
    (Example("zh", "这句话有几个字：我爱中国", "4", {"kind": "count", "text": "我爱中国"}), ["4"], ["5"], ["四个字", "4个"]),
    (Example("first_word", "What is the first word of: tom sees a cat", "tom", {"sentence": "tom sees a cat"}),
     ["tom", "Tom"], ["sees"], ["tom sees", "tom.", ""]),
])
def test_hand_made_verdicts(example, right, wrong, malformed):
    for response, verdict in [(r, "correct") for r in right] + [(w, "wrong") for w in wrong] + [
            (m, "malformed") for m in malformed]:
        assert check(example, response) == verdict, response


ADVERSARIAL = ["", " ", "\n\n", "<|im_end|>", "<|im_end|><|im_end|>", "\x00", "\ud800", "🙂" * 50, "9" * 100_000,
               "-" + "9" * 5_000, "[" * 100_000, "{" * 100_000, '{"len": ' + "9" * 5_000 + "}", '{"sum": 1e999}',
               '{"len": NaN}', "null", "[]", '{"first": null}', "a" * 1_000_000, "1 " * 50_000, "٣", "１２",
               "中" * 10_000, "None", "0x10", "1e3", "-", "--1", "\u3000", "\t5\t"]


def test_checkers_never_raise_on_adversarial_strings(examples_by_task):
    for name in TASKS:
        for example in examples_by_task[name][:3]:
            for response in ADVERSARIAL:
                assert check(example, response) in ("correct", "wrong", "malformed")


@settings(max_examples=300, deadline=None)
@given(data=st.data(), response=st.text())
def test_checkers_never_raise_on_any_text(examples_by_task, data, response):
    example = data.draw(st.sampled_from([ex for exs in examples_by_task.values() for ex in exs[:5]]))
    assert check(example, response) in ("correct", "wrong", "malformed")


def test_non_string_response_is_malformed():
    example = make_examples(1, seed=0)[0]
    assert check(example, None) == "malformed"  # type: ignore[arg-type]


def test_same_arguments_give_the_same_examples():
    assert make_examples(40, seed=7) == make_examples(40, seed=7)
    assert make_examples(40, seed=7, split="test") == make_examples(40, seed=7, split="test")
    assert make_examples(40, seed=7) != make_examples(40, seed=8)


def test_tasks_take_turns_in_the_given_order():
    assert [ex.task for ex in make_examples(2 * len(TASKS), seed=0)] == list(TASKS) * 2
    assert [ex.task for ex in make_examples(5, seed=0, tasks=["zh", "add"])] == ["zh", "add", "zh", "add", "zh"]
    # each task has its own random stream: its examples do not depend on the other tasks asked for
    alone = make_examples(3, seed=0, tasks=["sort"])
    mixed = [ex for ex in make_examples(3 * len(TASKS), seed=0) if ex.task == "sort"]
    assert alone == mixed


def test_train_and_test_are_disjoint_and_free_of_duplicates():
    train, test = make_examples(1600, seed=1), make_examples(400, seed=1, split="test")
    train_prompts, test_prompts = [ex.prompt for ex in train], [ex.prompt for ex in test]
    assert len(set(train_prompts)) == len(train_prompts) and len(set(test_prompts)) == len(test_prompts)
    assert not set(train_prompts) & set(test_prompts)
    assert all(split_of(p) == "train" for p in train_prompts) and all(split_of(p) == "test" for p in test_prompts)
    # another seed draws other examples but never moves a prompt to the other split
    assert not {ex.prompt for ex in make_examples(400, seed=2, split="test")} & set(train_prompts)


def test_split_of_is_a_stable_hash():
    assert split_of("What is 12 + 7?") == split_of("What is 12 + 7?")
    shares = [split_of(f"prompt {i}") for i in range(5000)]
    assert 0.07 < shares.count("test") / len(shares) < 0.13
    assert 0.17 < shares.count("rl") / len(shares) < 0.23


def test_rl_prompts_are_never_sft_prompts_whatever_the_seeds():
    """RL answers prompts of its own split: drawn from "train" with another seed, the tasks with few
    distinct prompts would hand RL the very prompts SFT learned by heart."""
    sft = {ex.prompt for ex in make_examples(4000, seed=0)}
    rl = {ex.prompt for ex in make_examples(2000, seed=0, split="rl")}
    rl_other_seed = {ex.prompt for ex in make_examples(2000, seed=7, split="rl")}
    test = {ex.prompt for ex in make_examples(800, seed=0, split="test")}
    assert not sft & rl and not sft & rl_other_seed and not rl & test
    # what the split prevents: another seed's "train" draw repeats SFT's prompts (copy, zh and json are
    # small spaces)
    assert len(sft & {ex.prompt for ex in make_examples(2000, seed=7)}) > 50


def test_a_task_that_runs_out_of_prompts_fails_clearly(monkeypatch):
    add = TASKS["add"]
    tiny = Task("tiny", "text", lambda rng: Example("tiny", f"Say {rng.choice('ab')}.", "x", {}), add.check,
                add.wrong, add.malformed)
    monkeypatch.setitem(TASKS, "tiny", tiny)
    monkeypatch.setattr(tasks_module, "MAX_TRIES", 200)
    with pytest.raises(RuntimeError, match="'tiny'.*distinct prompts"):
        make_examples(3, seed=0, tasks=["tiny"])


def test_unknown_names_are_errors_that_list_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown task 'bogus'; known tasks: add, sort, .*first_word"):
        make_examples(4, seed=0, tasks=["add", "bogus"])
    with pytest.raises(ValueError, match="unknown task 'bogus'"):
        check(Example("bogus", "p", "a", {}), "a")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        make_examples(4, seed=0, split="dev")
    with pytest.raises(ValueError, match="tasks is empty"):
        make_examples(4, seed=0, tasks=[])


def test_accuracy_on_a_hand_made_case():
    add = Example("add", "What is 1 + 2?", "3", {"a": 1, "b": 2})
    copy = Example("copy", "Say ab twice.", "ab ab", {"word": "ab", "n": 2})
    scores = accuracy([add, add, copy, add], ["3", "4", "ab ab", "three"])
    assert scores == {"add": pytest.approx(1 / 3), "copy": 1.0, "all": 0.5}
    assert accuracy([], []) == {"all": 0.0}
    with pytest.raises(ValueError, match="2 examples but 1 responses"):
        accuracy([add, copy], ["3"])


def test_example_json_round_trip_and_messages():
    for example in make_examples(2 * len(TASKS), seed=5):
        assert Example.from_json(json.loads(json.dumps(example.to_json()))) == example
    example = make_examples(1, seed=5)[0]
    assert example.messages() == [{"role": "user", "content": example.prompt},
                                  {"role": "assistant", "content": example.answer}]
    assert example.messages("Be brief.")[0] == {"role": "system", "content": "Be brief."}
    assert len({example, Example.from_json(example.to_json())}) == 1  # hashable despite its meta dict
    with pytest.raises(ValueError, match="lacks answer"):
        Example.from_json({"task": "add", "prompt": "p"})


@pytest.mark.parametrize("task", list(TASKS))
def test_no_constant_answer_scores_much_above_chance(task):
    """A task whose references are mostly one answer rewards saying only that: RL found "1" on the old
    `count` (63% of its references). No task's most common reference may cover 45% of its prompts."""
    examples = make_examples(300, seed=3, split="test", tasks=[task])
    top, n = Counter(ex.answer for ex in examples).most_common(1)[0]
    assert n / len(examples) < 0.45, f"{task}: {n} of {len(examples)} references are {top!r}"


def test_most_common_answer_share_is_what_one_answer_for_every_prompt_scores():
    from lmforge.align.accuracy import most_common_answer_share
    from lmforge.align.tasks import check

    examples = make_examples(400, seed=4, split="test", tasks=["count", "zh", "sort"])
    share = most_common_answer_share(examples)
    assert set(share) == {"count", "zh", "sort", "all"}
    for task in ("count", "zh", "sort"):  # the best constant reply, found by trying every reference
        mine = [ex for ex in examples if ex.task == task]
        best = max(sum(check(ex, reply) == "correct" for ex in mine) for reply in {ex.answer for ex in mine})
        assert share[task] == pytest.approx(best / len(mine))
    assert 0.25 < share["count"] < 0.45 and share["sort"] < 0.05


def test_pass_at_k_counts_a_prompt_when_any_of_its_k_answers_is_right(monkeypatch):
    import lmforge.align.accuracy as accuracy

    examples = make_examples(6, seed=5, split="test", tasks=["add", "sort"])  # add, sort, add, sort, ...
    wrong = {ex.prompt: ex.answer + "0" for ex in examples}  # a wrong but well-formed answer
    # per prompt, k = 3 answers: right in the last place, never right, right every time
    script = [[wrong[ex.prompt], wrong[ex.prompt], ex.answer] if i % 3 == 0 else
              [wrong[ex.prompt]] * 3 if i % 3 == 1 else [ex.answer] * 3 for i, ex in enumerate(examples)]
    asked = {}

    def fake(model, tokenizer, prompts, max_new_tokens, temperature=0.0, group=1, seed=0):
        asked.update(n=len(prompts), temperature=temperature, group=group, seed=seed)
        return [a for answers in script for a in answers]

    monkeypatch.setattr(accuracy, "generate_answers", fake)
    got = accuracy.task_pass_at_k(None, None, examples, 3, 0.7, seed=9)
    assert asked == {"n": 6, "temperature": 0.7, "group": 3, "seed": 9}
    # add: prompts 0 (right last), 2 (right always), 4 (never) -> 2/3; sort: 1 (never), 3 (right last), 5 (always)
    assert got == {"add": pytest.approx(2 / 3), "sort": pytest.approx(2 / 3), "all": pytest.approx(4 / 6)}
