"""Where online RL's rollouts are generated: in the trainer's process, or by Ray actors.

Both classes offer what the RL loop needs, so `rl()` runs the same code whichever the flag
(`rl.rollout_workers`) picks:
- `generate(prompt_ids, group, max_new_tokens, temperature, top_p, seed)`: the `Rollout`s, prompt by
  prompt, answer by answer (`lmforge.align.rollout.rollout`, the inference engine, does the work);
- `sync(model)`: after an update, the trainer's module's weights reach the engine(s);
- `close()`.

`Colocated` (0 workers): the engine decodes with the trainer's own module, so a sync only tells it
the weights changed. `RayRollouts` (N >= 1 workers, as OpenRLHF and verl do on several GPUs / nodes):
N Ray actors, each with its own copy of the policy (loaded from the same checkpoint) and its own
engine. The prompts are split into contiguous shards, one per worker; a shard starting at prompt j
samples with seed + j * group, so answer n still samples with seed + n and the rollouts are those
of the colocated engine. A sync puts the trainer's weights in Ray's object store once (CPU tensors)
and every worker loads them; the weights carry a version, and a worker refuses to generate with any
other version than the one it was last sent. Ray is optional (`pip install 'lmforge[ray]'`) and
imported only here, only when workers are asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lmforge.align.rollout import Rollout, rollout


def engine_for(model, tokenizer, max_requests: int):
    """The inference engine rollouts use: KV room for `max_requests` answers decoded at once."""
    from lmforge.generate.engine import Engine

    return Engine(model, tokenizer, kv_blocks=max(256, max_requests * 8), block_size=16, max_batch=max_requests)


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's whole state dict on the CPU (gathered, if FSDP shards it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in full.items()}


class Colocated:
    """Rollouts in the trainer's process, from the module the trainer updates (no copy of weights)."""

    def __init__(self, model, tokenizer, max_requests: int):
        self.model, self.tokenizer = model, tokenizer
        self.engine = engine_for(model, tokenizer, max_requests)

    def generate(self, prompt_ids: Sequence[list[int]], group: int, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int = 0) -> list[Rollout]:
        return rollout(self.engine, self.tokenizer, None, group, max_new_tokens, temperature, top_p, seed, prompt_ids)

    def sync(self, model: torch.nn.Module) -> None:
        if model is not self.model:
            raise ValueError("colocated rollouts decode with the trainer's own module; sync it, not another")
        self.engine.weights_updated()

    def close(self) -> None:
        pass


class RolloutWorker:
    """One Ray actor: a copy of the policy from `init_from` and its engine, on `threads` CPU threads,
    or on the GPU Ray gave it (`gpu`; float32 weights, as the trainer's master copy)."""

    def __init__(self, init_from: str, max_requests: int, threads: int, gpu: bool = False):
        from lmforge.model import load_model
        from lmforge.tokenizer import Tokenizer

        torch.set_num_threads(threads)
        self.tokenizer = Tokenizer.load(init_from)
        device = "cuda" if gpu else "cpu"
        if gpu and not torch.cuda.is_available():
            raise RuntimeError("rollout worker was given a GPU by Ray but torch sees no CUDA device; "
                               "install a CUDA build of torch on the Ray nodes or set rl.rollout_worker_gpus = 0")
        self.model = load_model(init_from).float().to(device).eval().requires_grad_(False)
        self.engine = engine_for(self.model, self.tokenizer, max_requests)
        self.version = 0  # the checkpoint's own weights

    def load(self, version: int, weights: dict[str, torch.Tensor]) -> int:
        with torch.no_grad():
            self.model.load_state_dict(weights)
        self.engine.weights_updated()
        self.version = version
        return version

    def ready(self) -> int:
        return self.version

    def generate(self, version: int, prompt_ids: list[list[int]], group: int, max_new_tokens: int,
                 temperature: float, top_p: float, seed: int) -> list[Rollout]:
        if version != self.version:
            raise RuntimeError(f"rollout worker holds weights version {self.version}, asked to decode with {version}")
        return rollout(self.engine, self.tokenizer, None, group, max_new_tokens, temperature, top_p, seed, prompt_ids)


def shards(n: int, parts: int) -> list[range]:
    """`n` items in at most `parts` contiguous, non-empty ranges whose sizes differ by at most one."""
    size, extra = divmod(n, parts)
    out, start = [], 0
    for k in range(min(parts, n)):
        stop = start + size + (k < extra)
        out.append(range(start, stop))
        start = stop
    return out


class RayRollouts:
    """Rollouts from `workers` Ray actors, each with `cpus` CPUs of its own, and `gpus` GPUs when
    asked (then they decode on the GPU)."""

    def __init__(self, init_from: str, workers: int, max_requests: int, cpus: float = 1.0,
                 start_timeout: float = 300.0, gpus: float = 0.0):
        from lmforge.ray_init import init_ray

        ray = init_ray("rl.rollout_workers > 0 needs ray: pip install 'lmforge[ray]'")
        self.ray = ray
        actor = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0)(RolloutWorker)
        self.workers = [actor.remote(str(init_from), max_requests, max(1, int(cpus)), gpus > 0)
                        for _ in range(workers)]
        self.version = 0
        _, waiting = ray.wait([w.ready.remote() for w in self.workers], num_returns=workers, timeout=start_timeout)
        if waiting:  # Ray would wait for room forever
            self.close()
            raise RuntimeError(f"{len(waiting)} of {workers} rollout workers did not start in {start_timeout:.0f} s; "
                               f"each asks for {cpus} CPUs and {gpus} GPUs, and Ray has "
                               f"{ray.available_resources()} free: lower rl.rollout_worker_cpus, "
                               "rl.rollout_worker_gpus or rl.rollout_workers")

    def generate(self, prompt_ids: Sequence[list[int]], group: int, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int = 0) -> list[Rollout]:
        prompt_ids = list(prompt_ids)
        parts = shards(len(prompt_ids), len(self.workers))
        futures = [w.generate.remote(self.version, prompt_ids[r.start:r.stop], group, max_new_tokens, temperature,
                                     top_p, seed + r.start * group)  # answer n keeps seed + n
                   for w, r in zip(self.workers, parts)]
        return [roll for part in self.ray.get(futures) for roll in part]

    def sync(self, model: torch.nn.Module) -> None:
        """The module's current weights to every worker (one copy in the object store), as a new version."""
        self.version += 1
        weights = self.ray.put(full_weights(model))
        loaded = self.ray.get([w.load.remote(self.version, weights) for w in self.workers])
        assert loaded == [self.version] * len(self.workers), loaded

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
        self.workers = []


def rollout_engine(cfg, model, tokenizer):
    """The rollouts `cfg.rollout_workers` asks for: colocated with `model` (0), or Ray workers."""
    max_requests = cfg.global_batch * cfg.group
    if cfg.rollout_workers == 0:
        return Colocated(model, tokenizer, max_requests)
    return RayRollouts(cfg.init_from, cfg.rollout_workers, max_requests, cfg.rollout_worker_cpus,
                       gpus=cfg.rollout_worker_gpus)
