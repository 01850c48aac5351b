"""The `[sft]`, `[rm]` and `[dpo]` recipe sections: the settings of supervised fine-tuning, reward
models and direct preference optimisation. The optimizer settings are the pre-training trainer's
(`TrainSection`), with fine-tuning defaults (a smaller learning rate, no weight decay as TRL's
trainers default to, cosine to zero). `sequence_parallel` splits every row over head x context
processes as `[train]`'s does (docs/sequence_parallel.md) for the stages whose losses are exact
under it (sft's next-token loss, rm's and polar's reward losses, dpo's sums over each answer); rl
refuses it. Every value is checked when the section is built."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lmforge.config import check_fields
from lmforge.train.config import SequenceParallelSection, TrainSection, check_split

TASK_DATA = "tasks"  # `data` value: the built-in checkable tasks (lmforge.align.tasks)


@dataclass
class FinetuneSection:
    """Settings every alignment stage shares: where to start, the data, the optimisation."""

    init_from: str = ""  # an HF InternLM2 / Llama directory (in `lmforge run`: the pre-trained model)
    out_dir: str = ""
    data: str = TASK_DATA  # "tasks" or a JSONL file (conversations, or preference pairs for rm / dpo)
    tasks: list[str] = field(default_factory=list)  # which built-in tasks (empty: all)
    train_examples: int = 2000  # built-in tasks: examples drawn for training
    eval_examples: int = 120  # built-in tasks: held-out examples for accuracy
    system_prompt: str = ""
    max_new_tokens: int = 24  # task accuracy: the longest answer generated (greedy)
    seed: int = 0
    steps: int = 200
    seq_len: int = 128
    global_batch: int = 16
    micro_batch: int = 16
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup_steps: int = 10
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ckpt_every: int = 100
    log_every: int = 10
    tensorboard: bool = True
    # LoongTrain's 2D sequence parallelism, `[train] sequence_parallel`'s settings and checks (off by default)
    sequence_parallel: SequenceParallelSection = field(default_factory=SequenceParallelSection)

    def __post_init__(self) -> None:
        check_fields(self, {"train_examples": ">= 1", "eval_examples": ">= 1", "max_new_tokens": ">= 1", "steps": ">= 1", "seq_len": ">= 8",
                            "global_batch": ">= 1", "micro_batch": ">= 1", "lr": ">= 0", "warmup_steps": ">= 0",
                            "min_lr_ratio": "[0, 1]", "weight_decay": ">= 0", "grad_clip": ">= 0",
                            "ckpt_every": ">= 1", "log_every": ">= 1"},
                     {"schedule": ("cosine", "wsd", "constant")})
        self.check_batch()
        check_split(self.sequence_parallel, self.seq_len)
        from lmforge.align.tasks import TASKS

        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"tasks = {self.tasks!r}: unknown {unknown}; known: {list(TASKS)}")

    def refuse_sequence_parallel(self, why: str) -> None:
        """For a stage whose loss is not exact when its rows are split over processes."""
        sp = self.sequence_parallel
        if sp.size > 1:
            raise ValueError(f"sequence_parallel = {{ head = {sp.head}, context = {sp.context} }}: {why}; set "
                             "head = 1 and context = 1 (train data parallel under torchrun). Sequence parallelism "
                             "works for sft, rm, polar and dpo (docs/sequence_parallel.md)")

    def check_batch(self) -> None:
        if self.global_batch % self.micro_batch:
            raise ValueError(f"global_batch = {self.global_batch}: must be a multiple of micro_batch = "
                             f"{self.micro_batch}")

    def train_section(self) -> TrainSection:
        """The trainer's settings for this stage (no shards: the stage brings its own loader). Loss-spike
        skipping is off: a fine-tuning batch's loss swings with the tasks it happens to hold, which the
        z-score test would mistake for spikes."""
        names = {f.name for f in dataclasses.fields(TrainSection)}
        return TrainSection(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in names},
                            val_every=0, spike_zscore=0.0)


@dataclass
class SFTSection(FinetuneSection):
    enabled: bool = False  # an `sft` stage in `lmforge run` (after pre-training)
    lora_rank: int = 0  # 0: full fine-tuning; r > 0: LoRA adapters of rank r (merged at export)
    lora_alpha: float = 16.0
    lora_targets: list[str] = field(default_factory=lambda: ["wqkv", "wo", "w1", "w2", "w3"])
    # pass@k of the SFT model on the held-out tasks: does any of `pass_k` answers sampled at
    # `pass_temperature` get a prompt right? RL reinforces what the sampler already finds, so this is
    # the ceiling RL can lift greedy accuracy towards, task by task (0: not measured)
    pass_k: int = 8
    pass_temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fields(self, {"lora_rank": ">= 0", "lora_alpha": "> 0", "pass_k": ">= 0", "pass_temperature": ">= 0"})


@dataclass
class RMSection(FinetuneSection):
    enabled: bool = False  # an `rm` stage in `lmforge run` (after SFT, from the SFT model)
    # "bt": Bradley-Terry; "cool": InternLM2's conditional RM loss (a per-domain system prompt, the
    # difficulty-decay focal ranking loss and the log barrier on scores; docs/papers.md §7).
    loss: str = "cool"
    focal_gamma: float = 2.0  # COOL: gamma of the difficulty decay (InternLM2 section 4.2)
    barrier: float = 0.02  # COOL: weight of the logarithmic barrier on scores
    barrier_bound: float = 5.0  # COOL: scores are kept inside (-bound, bound)
    ensemble: int = 1  # K reward models (seeds and data orders differ), combined by `combine`
    combine: str = "mean_minus_std"  # "mean", "min" or "mean_minus_std" (uncertainty-penalised)
    uncertainty: float = 1.0  # lambda of mean - lambda * std
    planted: bool = True  # demo data: one member sees a planted exploitable feature (see lmforge.align.preferences)
    lr: float = 5e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fields(self, {"focal_gamma": ">= 0", "barrier": ">= 0", "barrier_bound": "> 0", "ensemble": ">= 1",
                            "uncertainty": ">= 0"},
                     {"loss": ("bt", "cool"), "combine": ("mean", "min", "mean_minus_std")})


@dataclass
class DPOSection(FinetuneSection):
    loss: str = "dpo"  # "dpo" (sigmoid loss against the reference model) or "simpo" (reference-free)
    beta: float = 0.1  # DPO's beta (the paper's 0.1); for SimPO set 2.0 (its paper uses 2.0-2.5)
    simpo_gamma: float = 1.0  # SimPO's target margin gamma (its paper: gamma / beta = 0.5, so 1.0 at beta 2.0)
    lr: float = 2e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        # sequence_parallel: each answer's log-probs are summed over the ranks (lmforge.train.seqpar.rowsums)
        check_fields(self, {"beta": "> 0", "simpo_gamma": ">= 0"}, {"loss": ("dpo", "simpo")})


@dataclass
class PolarSection(FinetuneSection):
    """POLAR (arXiv 2507.05197; docs/papers.md §7): a reward model that scores a candidate against a
    reference answer, pre-trained to tell whether two answers come from the same policy, then
    fine-tuned on ranked triples from the checkers. `steps` is the fine-tuning's."""

    enabled: bool = False  # a `polar` stage in `lmforge run` (after rm)
    # The policy pool: HF model directories or training checkpoints (`.../checkpoints/step_N`); each
    # samples at every temperature, so len(policies) x len(temperatures) policies. In `lmforge run`,
    # empty means the pre-trained model, the SFT model and SFT's earlier checkpoint.
    policies: list[str] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=lambda: [0.7, 1.3])
    prompts: int = 300  # prompts the pool answers (two samples per policy) for pre-training
    pretrain_steps: int = 100
    seq_len: int = 256  # the prompt appears twice: reference and candidate
    lr: float = 5e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fields(self, {"temperatures": "> 0", "prompts": ">= 2", "pretrain_steps": ">= 0"})


@dataclass
class RLSection(FinetuneSection):
    """Online RL from the SFT model on the built-in tasks, rollouts from the inference engine.
    `global_batch` is the number of prompts per step; each is answered `group` times."""

    enabled: bool = False  # an `rl` stage in `lmforge run` (after sft)
    algorithm: str = "grpo"  # "grpo" / "rloo" (critic-free, group baselines), "rft" (best of group), "ppo"
    # ppo (COOL RLHF's settings, InternLM2 section 4.2): a critic initialised from the (first) reward
    # model, or from the policy with a fresh head, trained alone for `critic_warmup` steps; the KL to
    # the starting policy (`kl`, COOL: 0.01) enters the per-token reward; GAE with gamma 1 and
    # lambda `gae_lambda` (0.99); no advantage normalisation, no value clipping; the pre-training
    # loss mixed into the policy's update with weight `ptx` (COOL: 0.5), on `ptx_rows` packed rows of
    # `ptx_data` (token shards; in `lmforge run`, the run's pre-training shards) per step.
    critic_warmup: int = 50
    # Online RLHF (lmforge.align.online; reward = "rm"): `rounds` > 1 updates the reward models every
    # steps / rounds steps on checker-labelled pairs of the policy's own answers; `hack_window` > 0
    # watches for reward up while checker accuracy falls (or answers growing `hack_length_ratio` x)
    # over that many steps, and for held-out accuracy (every `eval_every` steps) falling below its best
    # while the reward rose, and patches them at once on the pairs they ranked wrong (the fast path).
    rounds: int = 1
    hack_window: int = 0
    hack_length_ratio: float = 2.0
    patch_steps: int = 20
    patch_lr: float = 5e-4
    patch_seq_len: int = 128
    ptx: float = 0.0
    ptx_data: str = ""
    ptx_rows: int = 4
    critic_lr: float = 1e-3
    gae_lambda: float = 0.99
    group: int = 8  # answers per prompt
    # Where the rollouts are generated (lmforge.align.rollout_workers): 0, by the engine in the
    # trainer's process with the trainer's own module (colocated); N >= 1, by N Ray actors, each with
    # its own copy of the policy, `rollout_worker_cpus` CPUs and its own engine, sent the trainer's
    # weights after every update (OpenRLHF / verl style; needs `pip install 'lmforge[ray]'`).
    rollout_workers: int = 0
    rollout_worker_cpus: float = 1.0
    # GPUs each worker asks Ray for (0: it decodes on its CPUs). Ray gives the actor its own devices
    # (CUDA_VISIBLE_DEVICES), apart from the trainer's; fractions share one GPU between workers.
    rollout_worker_gpus: float = 0.0
    reward: str = "checker"  # "checker": 1 correct, 0 wrong, malformed_reward malformed; "rm": reward models
    malformed_reward: float = -0.5
    # reward = "checker": a wrong but well-formed answer gets this times its similarity to the reference
    # (1 - edit distance / length, in words or characters; lmforge.align.tasks.similarity) instead of 0,
    # so a group of near misses is not all one reward. Must stay below 1, the reward of a right answer.
    partial_credit: float = 0.0
    # reward = "rm": reward-model directories (`lmforge rm`'s member-k/model, or its soup), scored under
    # COOL's per-domain system prompt when `conditioned`; several are combined by `combine` after
    # standardising each member's scores over the step's answers (lmforge.align.ensemble).
    reward_models: list[str] = field(default_factory=list)
    conditioned: bool = True
    polar_model: str = ""  # reward = "polar": a POLAR model (`lmforge polar`'s finetune/model)
    # rft: a group's best answer is learned when it beats the group's mean and scores at least this;
    # unset: 1.0 (correct answers only) with checker rewards, no floor with reward models' scores
    rft_min_reward: float | None = None
    # DAPO's dynamic sampling (Yu et al., arXiv 2503.14476, section 3.2): a group whose answers all got
    # the same reward has zero advantage under a group baseline (GRPO, RLOO; RFT has no standout), so
    # it adds nothing but tokens to the update. On: such groups are dropped, and further batches of
    # `global_batch` prompts are drawn and answered, at most `max_sample_batches` per step, until
    # `global_batch` groups with unequal rewards are found (a step trains on fewer when they run out).
    dynamic_sampling: bool = False
    max_sample_batches: int = 4
    combine: str = "mean_minus_std"
    uncertainty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    clip: float = 0.2
    kl: float = 0.0  # beta of the k3 KL to the starting policy (0: no reference model kept)
    kl_weighted: bool = True  # the KL term times the ratio pi / pi_old (unbiased off-policy; TRL's default)
    aggregate: str = "token"  # "token" (DAPO / TRL "bnpo") or "sequence" (TRL "grpo")
    eval_every: int = 25  # held-out greedy accuracy every this many steps (0: only before and after)
    # with `tasks` a subset: held-out prompts of every task, scored before and after only (100 a task:
    # ~3 s on a laptop CPU), so what the subset's training does to the rest is measured too
    every_examples: int = 800
    global_batch: int = 8
    micro_batch: int = 64  # rows (prompts x group) per forward
    lr: float = 2e-5
    warmup_steps: int = 0
    schedule: str = "constant"
    steps: int = 50

    def check_batch(self) -> None:  # micro_batch counts rows (prompts x group), split as they come
        pass

    def train_section(self) -> TrainSection:
        rows = self.global_batch * self.group  # the trainer sees one step's rows as one batch
        return FinetuneSection.train_section(dataclasses.replace(self, global_batch=rows, micro_batch=rows))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fields(self, {"critic_warmup": ">= 0", "rounds": ">= 1", "hack_window": ">= 0",
                            "hack_length_ratio": "> 1", "patch_steps": ">= 1", "patch_lr": "> 0",
                            "patch_seq_len": ">= 8", "ptx": ">= 0", "ptx_rows": ">= 1", "critic_lr": ">= 0", "gae_lambda": "[0, 1]",
                            "group": ">= 1", "temperature": "> 0", "top_p": "(0, 1]", "clip": ">= 0", "kl": ">= 0",
                            "eval_every": ">= 0", "every_examples": ">= 1", "rollout_workers": ">= 0",
                            "rollout_worker_cpus": "> 0", "rollout_worker_gpus": ">= 0", "max_sample_batches": ">= 1",
                            "partial_credit": "[0, 1)"},
                     {"algorithm": ("grpo", "rloo", "rft", "ppo"), "reward": ("checker", "rm", "polar"), "aggregate": ("token", "sequence"),
                      "combine": ("mean", "min", "mean_minus_std")})
        self.refuse_sequence_parallel("online RL generates and trains in one process (its policy loss and "
                                      "rollouts are not split)")
        if (self.rounds > 1 or self.hack_window) and self.reward != "rm":
            raise ValueError(f"rounds = {self.rounds}, hack_window = {self.hack_window}: online RLHF updates reward "
                             f"models, so it needs reward = 'rm' (this recipe has reward = {self.reward!r})")
        if self.partial_credit and self.reward != "checker":
            raise ValueError(f"partial_credit = {self.partial_credit} with reward = {self.reward!r}: partial credit "
                             "grades the checkers' wrong answers; use it with reward = 'checker' or set it to 0")
        if self.dynamic_sampling and self.algorithm == "ppo":
            raise ValueError("dynamic_sampling = true with algorithm = 'ppo': it drops the groups whose answers all "
                             "got one reward because a group baseline gives them zero advantage, but PPO's critic "
                             "gives them advantages; use it with 'grpo', 'rloo' or 'rft', or set dynamic_sampling = false")
        if self.ptx and self.algorithm == "rft":
            raise ValueError("ptx > 0 with algorithm = 'rft': rejection sampling already trains on a next-token "
                             "loss; mix pre-training rows into the RFT data instead, or set ptx = 0")
        if self.reward == "polar" and not self.polar_model:
            raise ValueError("reward = 'polar' needs polar_model: the directory `lmforge polar` wrote "
                             "(e.g. runs/tiny/polar/finetune/model)")
        if self.reward == "rm" and not self.reward_models:
            raise ValueError("reward = 'rm' needs reward_models: the reward-model directories `lmforge rm` wrote "
                             "(e.g. runs/tiny/rm/member-1/model)")
        if self.algorithm == "rloo" and self.group < 2:
            raise ValueError("algorithm = 'rloo' needs group >= 2 (a leave-one-out baseline)")
