"""Rollouts from Ray workers (lmforge.align.rollout_workers) against the colocated engine: the same
tokens for the same seed, the trainer's new weights reach the workers, and an `rl` run is the same
run whichever generates its rollouts."""

import json
import sys

import signal

import pytest
import torch

ray = pytest.importorskip("ray")

PROMPTS = [[{"role": "user", "content": "Add 2 and 3."}], [{"role": "user", "content": "Reverse: cat"}],
           [{"role": "user", "content": "Add 17 and 25."}]]


@pytest.fixture(scope="module")
def ray_cluster():
    previous = signal.getsignal(signal.SIGTERM)  # ray.init installs its own and leaves it after shutdown
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    signal.signal(signal.SIGTERM, previous)  # later tests fork: a child must not run Ray's exit path


@pytest.fixture(scope="module")
def workers(ray_cluster, tiny_dir):
    from lmforge.align.rollout_workers import RayRollouts

    w = RayRollouts(str(tiny_dir), workers=2, max_requests=len(PROMPTS) * 3, cpus=0.5)  # half of the 2 CPUs
    yield w
    w.close()


def setting(tiny_dir):
    from lmforge.model import load_model
    from lmforge.tokenizer import Tokenizer

    tok = Tokenizer.load(tiny_dir)
    return load_model(tiny_dir).float(), tok, [tok.encode_chat(p, add_generation_prompt=True) for p in PROMPTS]


def completions(rolls):
    return [r.completion for r in rolls]


def test_shards_are_contiguous_and_cover_everything():
    from lmforge.align.rollout_workers import shards

    assert shards(5, 2) == [range(0, 3), range(3, 5)]
    assert shards(1, 3) == [range(0, 1)]
    assert [i for r in shards(8, 3) for i in r] == list(range(8))


def test_ray_workers_sample_the_colocated_tokens(workers, tiny_dir):
    from lmforge.align.rollout_workers import Colocated

    model, tok, ids = setting(tiny_dir)
    here = Colocated(model, tok, len(ids) * 3)
    workers.sync(model)
    for seed in (3, 11):
        a = here.generate(ids, 3, 8, temperature=1.0, seed=seed)
        b = workers.generate(ids, 3, 8, temperature=1.0, seed=seed)
        assert completions(a) == completions(b)
        assert [r.text for r in a] == [r.text for r in b] and [r.prompt for r in a] == [r.prompt for r in b]
        assert len({tuple(c) for c in completions(a)}) > 1  # sampled, not all the same answer


def test_sync_sends_the_trainers_new_weights(workers, tiny_dir):
    from lmforge.align.rollout_workers import Colocated

    model, tok, ids = setting(tiny_dir)
    workers.sync(model)
    before = completions(workers.generate(ids, 3, 8, seed=5))
    with torch.no_grad():  # an "update": the policy moves far enough to change its samples
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    here = Colocated(model, tok, len(ids) * 3)
    moved = completions(here.generate(ids, 3, 8, seed=5))
    assert moved != before
    assert completions(workers.generate(ids, 3, 8, seed=5)) == before  # not synced yet: the old policy
    version = workers.version
    workers.sync(model)
    assert workers.version == version + 1
    assert completions(workers.generate(ids, 3, 8, seed=5)) == moved
    workers.version -= 1  # the loop asking for weights the workers were not sent is refused
    with pytest.raises(ray.exceptions.RayTaskError, match="weights version"):
        workers.generate(ids, 3, 8, seed=5)
    workers.version += 1


def test_rl_with_ray_workers_is_the_colocated_run(ray_cluster, tiny_dir, tmp_path):
    from lmforge.align.config import RLSection
    from lmforge.align.reward import RewardModel, save_reward_model
    from lmforge.align.rl import rl
    from lmforge.model import load_model

    # a random reward model: rewards that differ within a group (the tiny model's answers are all
    # malformed to the checkers), so the policy moves at every step
    rm = RewardModel.from_lm(load_model(tiny_dir), seed=1)
    torch.nn.init.normal_(rm.score.weight)
    rm_dir = str(save_reward_model(rm, tmp_path / "rm", tiny_dir))
    rows = {}
    for n in (0, 2):
        cfg = RLSection(init_from=str(tiny_dir), steps=3, lr=1e-2, global_batch=3, group=2, train_examples=12,
                        eval_examples=4, max_new_tokens=6, eval_every=0, tensorboard=False, reward="rm",
                        reward_models=[rm_dir], rollout_workers=n, rollout_worker_cpus=0.5)
        rl(cfg, tmp_path / f"rl{n}", resume=False)
        rows[n] = [json.loads(line) for line in (tmp_path / f"rl{n}" / "metrics.jsonl").read_text().splitlines()
                   if "reward" in json.loads(line)]
    assert len(rows[0]) == len(rows[2]) == 3 and all("sync_s" in r for r in rows[2])
    keys = ("reward", "accuracy", "response_len", "loss", "grad_norm")
    for a, b in zip(rows[0], rows[2]):
        for k in keys:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (a["step"], k)
    assert all(r["grad_norm"] > 0 for r in rows[0])  # the policy moved at every step, and the workers with it


def test_the_flag_is_checked():
    from lmforge.align.config import RLSection

    with pytest.raises(ValueError, match="rollout_workers"):
        RLSection(rollout_workers=-1)
    with pytest.raises(ValueError, match="rollout_worker_cpus"):
        RLSection(rollout_worker_cpus=0)
    with pytest.raises(ValueError, match="rollout_worker_gpus"):
        RLSection(rollout_worker_gpus=-1)


def test_workers_asking_for_gpus_ray_lacks_say_what_to_lower(ray_cluster, tiny_dir):
    """A worker placed on a GPU asks Ray for it; where there is none (this CPU cluster) the start
    times out with a message naming the settings, instead of waiting forever."""
    from lmforge.align.rollout_workers import RayRollouts

    with pytest.raises(RuntimeError, match=r"1 of 1 rollout workers did not start.*1\.0 GPUs.*rollout_worker_gpus"):
        RayRollouts(str(tiny_dir), workers=1, max_requests=4, cpus=0.5, start_timeout=3, gpus=1.0)


def test_workers_without_ray_say_how_to_get_it(monkeypatch, tiny_dir):
    from lmforge.align.rollout_workers import RayRollouts

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'lmforge\[ray\]'"):
        RayRollouts(str(tiny_dir), workers=2, max_requests=4)


def test_the_workers_end_when_a_step_raises(ray_cluster, tiny_dir, tmp_path, monkeypatch):
    """A step that raises (here the checkers) still kills the Ray actors: they do not outlive the
    run while the driver goes on (a notebook, a sweep)."""
    import ray

    from lmforge.align import rl as rl_module
    from lmforge.align.config import RLSection
    from lmforge.align.rollout_workers import RayRollouts

    started = []
    real_init = RayRollouts.__init__

    def recording_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        started.extend(self.workers)

    def failing_checkers(*args, **kwargs):
        raise RuntimeError("checker crashed")

    monkeypatch.setattr(RayRollouts, "__init__", recording_init)
    monkeypatch.setattr(rl_module, "checker_rewards", failing_checkers)
    cfg = RLSection(init_from=str(tiny_dir), steps=2, global_batch=2, group=2, train_examples=8, eval_examples=4,
                    max_new_tokens=4, eval_every=0, tensorboard=False, rollout_workers=2, rollout_worker_cpus=0.5)
    with pytest.raises(RuntimeError, match="checker crashed"):
        rl_module.rl(cfg, tmp_path / "rl", resume=False)
    assert len(started) == 2
    assert all(_dies(ray, w, within=30.0) for w in started)


def _dies(ray, actor, within: float) -> bool:
    """Whether the actor is gone within `within` seconds: `ray.kill` is asynchronous, so a call made
    right after it can still be answered."""
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            ray.get(actor.ready.remote(), timeout=within)
        except ray.exceptions.RayActorError:
            return True
        time.sleep(0.2)
    return False
