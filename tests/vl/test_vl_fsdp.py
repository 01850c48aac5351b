"""The InternVL3-style model trains the same under FSDP2 over 2 gloo processes as in one process.

A tiny random InternVL and a fixed set of VL samples (captions of 1- and 2-tile images, a text row),
packed by `VLLoader` into a global batch of 4 rows, each image's V2PE delta drawn from (1, 0.5,
0.25). Each rank's micro-batches are the whole run's rows of its share, carrying exactly the tiles
of their images in the order of the image-token runs and the same V2PE positions as one process
(whatever the micro-batch size). Two `Trainer.step`s with the next-token loss under world size 2
(FSDP2 on every block of both towers, then the root) give the same losses, gradient norms and
updated weights as one process within 1e-5 (float32), and the full state dict gathered on rank 0
loads into a fresh InternVL. A micro-batch of text rows only still runs the vision tower (on no
tiles: FSDP2's gathers need every rank), so a rank without images trains like one process too.
Block checkpointing of the language model gives the same loss and gradients in one process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lmforge.align.chat_rows import Encoded
from lmforge.model.vision import InternVL, tiny_vl_config
from lmforge.model.vision.v2pe import image_runs
from lmforge.train.config import TrainSection
from lmforge.train.losses import NextTokenLoss
from lmforge.train.parallel import DistInfo, all_reduce_sum, init_distributed
from lmforge.train.trainer import Trainer
from lmforge.vl.rows import VLLoader, VLSample

CFG = tiny_vl_config(vocab_size=64, n_layers=2, attn_backend="sdpa")
K, IMG = CFG.num_image_token, CFG.image_token_id
BOS, EOS, IMG_START, IMG_END, FIRST_TEXT = 1, 2, 3, 4, 8  # token ids built directly, no tokenizer
SEQ_LEN, GLOBAL_BATCH, MICRO_BATCH, LR, STEPS, DELTAS = 56, 4, 1, 1e-2, 2, (1.0, 0.5, 0.25)
TOLERANCE = 1e-5


def sample(index: int, n_tiles: int, n_text: int) -> VLSample:
    """A caption of `n_tiles` tiles whose first caption token names the sample (FIRST_TEXT + index)
    and whose tile t holds the value index + t / 10 in its first pixel (random elsewhere)."""
    gen = torch.Generator().manual_seed(index)
    text = [FIRST_TEXT + index] + torch.randint(FIRST_TEXT, IMG, (n_text - 1,), generator=gen).tolist()
    if n_tiles == 0:
        return VLSample(Encoded([BOS] + text + [EOS], [True] * (n_text + 2)), None)
    pixels = torch.randn(n_tiles, 3, CFG.vision.image_size, CFG.vision.image_size, generator=gen)
    pixels[:, 0, 0, 0] = index + torch.arange(n_tiles) / 10
    head = [BOS, IMG_START] + [IMG] * (n_tiles * K) + [IMG_END]
    body = text + [EOS]
    return VLSample(Encoded(head + body, [False] * len(head) + [True] * len(body)), pixels)


def samples(text_only_rank: bool = False) -> list[VLSample]:
    """Captions of one and two tiles and a text-only sample; with `text_only_rank`, only text rows
    beside a single image, so that one rank of two gets no image at all."""
    if text_only_rank:
        return [sample(0, 1, 30)] + [sample(i, 0, 48) for i in range(1, 5)]
    return [sample(0, 1, 6), sample(1, 2, 5), sample(2, 1, 12), sample(3, 0, 20), sample(4, 1, 9),
            sample(5, 1, 4), sample(6, 2, 7), sample(7, 1, 25), sample(8, 1, 3)]


def loader(data: list[VLSample], dp_rank: int = 0, dp_size: int = 1, micro_batch: int = MICRO_BATCH) -> VLLoader:
    return VLLoader(data, SEQ_LEN, GLOBAL_BATCH, micro_batch, IMG, DELTAS, dp_rank, dp_size, seed=1)


def train_section(checkpointing: str = "none") -> TrainSection:
    return TrainSection(seq_len=SEQ_LEN, global_batch=GLOBAL_BATCH, micro_batch=MICRO_BATCH, lr=LR, warmup_steps=0,
                        grad_clip=1.0, spike_zscore=0.0, activation_checkpointing=checkpointing, dtype="float32")


def fresh_model() -> InternVL:
    torch.manual_seed(0)
    model = InternVL(CFG)
    model.init_weights(seed=0)
    return model.train()


def check_tiles_follow_rows(batch) -> None:
    """The micro-batch's tiles are its own images', in the order of their image-token runs."""
    _, index = image_runs(batch.input_ids, IMG, batch.document_ids)
    n_images = int(index.max()) + 1
    tiles = batch.pixel_values
    if n_images == 0:  # a micro-batch of text rows only
        assert tiles is None
        return
    assert len(tiles) * K == int((batch.input_ids == IMG).sum())
    want = []
    for i in range(n_images):
        row, cols = (index == i).nonzero(as_tuple=True)
        after = int(cols.max()) + 2  # past IMG_END: the caption's first token names the sample
        name = int(batch.input_ids[row[0], after]) - FIRST_TEXT
        want += [name + t / 10 for t in range(len(cols) // K)]
    assert torch.allclose(tiles[:, 0, 0, 0], torch.tensor(want)), (tiles[:, 0, 0, 0].tolist(), want)


def _plain(name: str) -> str:
    return name.replace("_checkpoint_wrapped_module.", "")


def train(trainer: Trainer, data_loader: VLLoader) -> list[tuple[float, float]]:
    """(loss, gradient norm) of each of STEPS steps."""
    out = []
    for _ in range(STEPS):
        stats = trainer.step(data_loader.next_step(), NextTokenLoss(), LR)
        out.append((stats.loss, stats.grad_norm))
    return out


def reference(data: list[VLSample]) -> tuple[list[tuple[float, float]], dict[str, torch.Tensor]]:
    trainer = Trainer(fresh_model(), train_section(), DistInfo())
    stats = train(trainer, loader(data))
    start = fresh_model().state_dict()
    assert all(not torch.equal(start[k], v) for k, v in trainer.model.state_dict().items())  # all trained
    return stats, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def run(rank: int, world: int, store: str) -> None:
    os.environ.update(OMP_NUM_THREADS="1", WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        info = init_distributed(device="cpu")  # joins the group above, builds the dp mesh
        assert (info.dp_rank, info.dp_size) == (rank, world)
        for text_only_rank in (False, True):
            data = samples(text_only_rank)
            ref_stats, ref_weights = reference(data)
            mine = loader(data, info.dp_rank, info.dp_size)
            trainer = Trainer(fresh_model(), train_section(), info)
            # The loader's micro-batches of this rank are the whole run's rows [rank * 2, rank * 2 + 2).
            probe, whole = loader(data, info.dp_rank, info.dp_size), loader(data)
            imageless = 0
            for _ in range(STEPS):
                got, rows = probe.next_step(), whole.next_step()[rank * 2:rank * 2 + 2]
                assert len(got) == GLOBAL_BATCH // (MICRO_BATCH * world)
                for g, w in zip(got, rows):
                    assert torch.equal(g.input_ids, w.input_ids) and torch.equal(g.position_ids, w.position_ids)
                    check_tiles_follow_rows(g)
                    imageless += g.pixel_values is None
            assert all_reduce_sum(imageless, info) >= 1  # some micro-batch of some rank has no image
            stats = train(trainer, mine)
            for (loss, norm), (ref_loss, ref_norm) in zip(stats, ref_stats):
                assert abs(loss - ref_loss) <= TOLERANCE and abs(norm - ref_norm) <= TOLERANCE, (stats, ref_stats)
            weights = trainer.full_state_dict(every_rank=True)
            assert weights.keys() == ref_weights.keys()
            err = max((weights[k] - w).abs().max().item() for k, w in ref_weights.items())
            assert err <= TOLERANCE, f"rank {rank}, text_only_rank={text_only_rank}: weights differ by {err:.3g}"
            full = trainer.full_state_dict()  # rank 0 only, on the CPU
            if rank == 0:
                plain = InternVL(CFG)
                plain.load_state_dict(full)  # strict: every name of a plain InternVL
                assert max((plain.state_dict()[k] - w).abs().max().item() for k, w in ref_weights.items()) <= TOLERANCE
            else:
                assert not full
    finally:
        dist.destroy_process_group()


def test_two_processes_train_like_one(tmp_path):
    mp.spawn(run, args=(2, str(tmp_path / "store")), nprocs=2, join=True)


def test_v2pe_deltas_do_not_depend_on_the_split():
    """Each row's drawn deltas are the same whichever rank and micro-batch it lands in."""
    def rows(dp_size: int, micro_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [b for r in range(dp_size) for b in loader(samples(), r, dp_size, micro_batch).next_step()]
        return torch.cat([b.input_ids for b in parts]), torch.cat([b.position_ids for b in parts])

    ids, pos = rows(1, 1)
    assert len(set(torch.diff(pos[ids == IMG]).tolist()) & set(DELTAS)) > 1  # several deltas were drawn
    for dp_size, micro_batch in ((2, 1), (2, 2), (1, 4)):
        other_ids, other_pos = rows(dp_size, micro_batch)
        assert torch.equal(ids, other_ids) and torch.equal(pos, other_pos)


def test_block_checkpointing_gives_the_same_loss_and_gradients():
    batches = loader(samples()).next_step()[1:3]  # a 1-tile and a 2-tile image
    results = []
    for checkpointing in ("none", "blocks"):
        trainer = Trainer(fresh_model(), train_section(checkpointing), DistInfo())
        assert all(type(b).__name__ == "CheckpointWrapper" for b in trainer.model.language_model.layers) == (
            checkpointing == "blocks")
        loss_fn = NextTokenLoss()
        divisor = sum(loss_fn.count(b) for b in batches)
        total = 0.0
        for b in batches:
            loss, _ = loss_fn(trainer.model, b, divisor)
            loss.backward()
            total += float(loss.detach())
        results.append((total, {_plain(n): p.grad.clone() for n, p in trainer.model.named_parameters()}))
    (loss, grads), (ac_loss, ac_grads) = results
    assert abs(loss - ac_loss) <= TOLERANCE
    assert grads.keys() == ac_grads.keys() and all(g.abs().sum() > 0 for g in grads.values())
    assert max((grads[k] - ac_grads[k]).abs().max().item() for k in grads) <= TOLERANCE
