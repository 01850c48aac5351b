"""SentencePiece `tokenizer.model` -> `tokenizers` pipeline.

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §1, "Tokenizer".

InternLM2 publishes its 92,544-entry tokenizer as a SentencePiece BPE model with byte fallback
and user-defined special tokens. This module reads the model proto and builds an equivalent
Hugging Face `tokenizers.Tokenizer`, so the rest of lmforge has one code path for every tokenizer:

* vocabulary: piece -> id, as in the proto;
* merges: SentencePiece BPE keeps no merge list, it merges the adjacent pair whose concatenation
  is the highest-scoring piece. Every way of splitting a piece into two pieces is therefore a
  merge, ranked by the score of the merged piece, which makes HF BPE pick the same pairs;
* normalizer: the model's precompiled character map (if any), `remove_extra_whitespaces`,
  the dummy `▁` prefix (`add_dummy_prefix`) and spaces escaped as `▁`, in SentencePiece's order;
* byte fallback: characters outside the vocabulary become `<0xXX>` byte pieces;
* special tokens: control, unknown and user-defined pieces are matched in the text first and
  never split. Each stretch of text between them is normalized (and gets its dummy prefix) on its
  own: that is how InternLM2's own Hugging Face tokenizer behaves, i.e. `encode(a + <|im_end|> +
  b)` equals `sp.encode(a) + [id(<|im_end|>)] + sp.encode(b)`.

`sentencepiece` (with protobuf) is only needed here and is imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, decoders, normalizers
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers.models import BPE

from lmforge.tokenizer.special import bos_post_processor

SPACE = "\u2581"  # "▁", SentencePiece's visible space

# ModelProto.SentencePiece.Type values.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
BPE_MODEL_TYPE = 2


@dataclass
class SentencePieceConversion:
    """A converted model and the special token names its trainer spec declares."""

    backend: BackendTokenizer
    bos_token: str | None
    eos_token: str | None
    unk_token: str | None
    pad_token: str | None


def _model_pb2() -> Any:
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as e:
        raise ImportError(
            "reading a SentencePiece tokenizer.model needs the sentencepiece and protobuf "
            "packages: pip install 'lmforge[sentencepiece]'"
        ) from e
    return sentencepiece_model_pb2


def read_model_proto(path: str | Path) -> Any:
    """Parse a `tokenizer.model`; a file that is not a SentencePiece model is a ValueError."""
    path = Path(path)
    proto = _model_pb2().ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as e:  # protobuf's DecodeError, or a truncated file
        raise ValueError(f"{path} is not a SentencePiece model ({e})") from e
    if not proto.pieces:
        raise ValueError(f"{path} is not a SentencePiece model (it has no pieces)")
    return proto


def bpe_merges(pieces: list[tuple[str, float, int]]) -> list[tuple[str, str]]:
    """All (left, right) pairs that SentencePiece BPE could merge, best merge first.

    `pieces` are (piece, score, type). A pair is a merge when left, right and left + right are
    all normal pieces; its priority is the merged piece's score (ties: vocabulary order), the
    same order in which SentencePiece's encoder picks pairs.
    """
    rank = {p: i for i, (p, _, t) in enumerate(pieces) if t == NORMAL}
    merges: list[tuple[float, int, int, int, str, str]] = []
    for piece, score, kind in pieces:
        if kind != NORMAL or len(piece) < 2:
            continue
        merged_id = rank[piece]
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in rank and right in rank:
                merges.append((-score, merged_id, rank[left], rank[right], left, right))
    merges.sort()
    return [(left, right) for *_, left, right in merges]


def _normalizer(spec: Any) -> normalizers.Normalizer | None:
    steps: list[normalizers.Normalizer] = []
    if spec.precompiled_charsmap:
        # The same compiled NFKC-like table SentencePiece applies (empty for "identity").
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        # SentencePiece means U+0020 only (after the char map), not every Unicode space;
        # \A and \z, because ^ and $ are line anchors in the Oniguruma syntax used here.
        steps.append(normalizers.Replace(Regex(" {2,}"), " "))
        steps.append(normalizers.Replace(Regex(r"\A | \z"), ""))
    if spec.add_dummy_prefix:
        # Prepend leaves empty text empty, as SentencePiece does.
        steps.append(normalizers.Prepend(SPACE))
    if spec.escape_whitespaces:
        steps.append(normalizers.Replace(" ", SPACE))
    return normalizers.Sequence(steps) if steps else None


def _decoder(spec: Any) -> decoders.Decoder:
    steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if spec.add_dummy_prefix or spec.remove_extra_whitespaces:
        # SentencePiece drops the space of the first piece when the encoder may have added it.
        steps.append(decoders.Strip(" ", 1, 0))
    return decoders.Sequence(steps)


def convert_sentencepiece(path: str | Path) -> SentencePieceConversion:
    """Build a `tokenizers` pipeline equivalent to the SentencePiece BPE model at `path`."""
    path = Path(path)
    proto = read_model_proto(path)
    trainer, spec = proto.trainer_spec, proto.normalizer_spec
    if trainer.model_type != BPE_MODEL_TYPE:
        raise ValueError(
            f"{path}: only SentencePiece BPE models are supported (InternLM2's is BPE); this one "
            f"has model_type={trainer.model_type} (1 = unigram, 3 = word, 4 = char)"
        )
    if trainer.treat_whitespace_as_suffix:
        raise ValueError(f"{path}: treat_whitespace_as_suffix=true models are not supported")

    pieces = [(p.piece, p.score, p.type) for p in proto.pieces]
    vocab = {piece: i for i, (piece, _, _) in enumerate(pieces)}
    if len(vocab) != len(pieces):
        raise ValueError(f"{path}: the model has duplicate pieces")
    unk_id = trainer.unk_id if 0 <= trainer.unk_id < len(pieces) else None
    unk_token = pieces[unk_id][0] if unk_id is not None else None

    backend = BackendTokenizer(
        BPE(
            vocab=vocab,
            merges=bpe_merges(pieces),
            unk_token=unk_token,
            # SentencePiece emits one <unk> for a run of unknown characters.
            fuse_unk=True,
            byte_fallback=trainer.byte_fallback,
        )
    )
    backend.normalizer = _normalizer(spec)
    backend.decoder = _decoder(spec)
    specials = [
        AddedToken(piece, special=True, normalized=False)
        for piece, _, kind in pieces
        if kind in (UNKNOWN, CONTROL, USER_DEFINED)
    ]
    backend.add_special_tokens(specials)

    def name(token_id: int) -> str | None:
        return pieces[token_id][0] if 0 <= token_id < len(pieces) else None

    bos = name(trainer.bos_id)
    if bos is not None:
        backend.post_processor = bos_post_processor(trainer.bos_id, bos)
    return SentencePieceConversion(
        backend=backend,
        bos_token=bos,
        eos_token=name(trainer.eos_id),
        unk_token=unk_token,
        pad_token=name(trainer.pad_id),
    )
