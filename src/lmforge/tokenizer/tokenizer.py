"""The `Tokenizer` used across lmforge: load, save, encode, decode and chat.

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §1.

It wraps a Hugging Face `tokenizers.Tokenizer` (the Rust pipeline) and adds what the rest of the
life cycle needs: InternLM2's special token ids, the chat format, stop ids for generation and
loading of both `tokenizer.json` directories and SentencePiece `tokenizer.model` files such as
the one published with InternLM2. It needs neither `transformers` nor Jinja at runtime.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer as BackendTokenizer

from lmforge.tokenizer import hf_files
from lmforge.tokenizer.chat import INTERNLM2_CHAT_TEMPLATE, Message, render_chat, render_template
from lmforge.tokenizer.special import BOS, EOS, IM_END, UNK

# InternLM2's released context length, max_position_embeddings (InternLM2 report, arXiv 2403.17297;
# docs/papers.md §1).
DEFAULT_MODEL_MAX_LENGTH = 32768


class Tokenizer:
    """A tokenizer with InternLM2's special tokens and chat format.

    `backend` is the `tokenizers.Tokenizer` doing the work. Special token names that are not in
    its vocabulary are dropped (their ids are then None).
    """

    def __init__(
        self,
        backend: BackendTokenizer,
        *,
        bos_token: str | None = BOS,
        eos_token: str | None = EOS,
        unk_token: str | None = UNK,
        pad_token: str | None = None,
        chat_template: str | None = INTERNLM2_CHAT_TEMPLATE,
        model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
    ) -> None:
        self.backend = backend
        known = self._known
        self.bos_token = known(bos_token)
        self.eos_token = known(eos_token)
        self.unk_token = known(unk_token)
        self.pad_token = known(pad_token)
        self.chat_template = chat_template
        self.model_max_length = model_max_length

    def _known(self, token: str | None) -> str | None:
        return token if token is not None and self.backend.token_to_id(token) is not None else None

    # ---- loading and saving --------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Load from a directory (tokenizer.json, else tokenizer.model) or a file of either kind."""
        path = Path(path)
        if path.is_dir():
            directory = path
            json_file = path / hf_files.TOKENIZER_JSON
            sp_file = path / hf_files.SENTENCEPIECE_MODEL
            if json_file.is_file():
                file, kind = json_file, "json"
            elif sp_file.is_file():
                file, kind = sp_file, "sentencepiece"
            else:
                present = sorted(p.name for p in path.iterdir())[:20]
                raise FileNotFoundError(
                    f"no tokenizer in {path}: expected {hf_files.TOKENIZER_JSON} (Hugging Face "
                    f"tokenizers) or {hf_files.SENTENCEPIECE_MODEL} (SentencePiece); found "
                    f"{present or 'an empty directory'}"
                )
        elif path.is_file():
            directory, file = path.parent, path
            kind = "json" if path.suffix == ".json" else "sentencepiece"
        else:
            raise FileNotFoundError(
                f"{path} does not exist; pass a tokenizer directory or a tokenizer.json / "
                "tokenizer.model file"
            )

        # The neighbouring tokenizer_config.json belongs to a file only if it has the standard
        # name; a renamed file (e.g. my_tokenizer.json) is taken on its own.
        settings = hf_files.read_config(directory) if file.name in (
            hf_files.TOKENIZER_JSON, hf_files.SENTENCEPIECE_MODEL) else {}
        if kind == "json":
            backend = hf_files.read_backend(file)
            defaults = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK, "pad_token": None}
        else:
            from lmforge.tokenizer.sentencepiece import convert_sentencepiece

            converted = convert_sentencepiece(file)
            backend = converted.backend
            defaults = {"bos_token": converted.bos_token, "eos_token": converted.eos_token,
                        "unk_token": converted.unk_token, "pad_token": converted.pad_token}
        kwargs = {**defaults, **settings}
        return cls(backend, **kwargs)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write a directory that `Tokenizer.load` and `transformers.AutoTokenizer` both read."""
        directory = Path(directory)
        hf_files.write_files(
            directory,
            self.backend,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            unk_token=self.unk_token,
            # transformers needs a pad token to batch; InternLM2 pads with </s> too.
            pad_token=self.pad_token or self.eos_token,
            extra_special_tokens=[t for t in self.special_tokens if t not in (
                self.bos_token, self.eos_token, self.unk_token, self.pad_token)],
            chat_template=self.chat_template,
            model_max_length=self.model_max_length,
        )
        return directory

    # ---- vocabulary ----------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    @property
    def bos_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def unk_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def pad_id(self) -> int | None:
        """The pad id, or the eos id when there is no pad token (padding is masked anyway)."""
        pad = self._id(self.pad_token)
        return pad if pad is not None else self.eos_id

    @property
    def special_tokens(self) -> list[str]:
        """Tokens that are never split and are matched in text, in id order."""
        decoder = self.backend.get_added_tokens_decoder()
        return [decoder[i].content for i in sorted(decoder) if decoder[i].special]

    def token_byte_lengths(self) -> list[int]:
        """UTF-8 bytes of text each id stands for (0 for special tokens): the denominator of bits per
        byte from token losses (nanochat's `token_bytes`)."""
        return [len(b) for b in self.token_bytes()]

    def token_bytes(self) -> list[bytes]:
        """The bytes of text each id stands for (b"" for special tokens): what constrained decoding
        matches against a grammar. Byte-level BPE writes every byte as one character of its
        alphabet; SentencePiece writes byte-fallback pieces as `<0xAB>` and spaces as U+2581."""
        byte_of, special = _byte_level_decoding(), set(self.special_tokens)
        out = []
        for i in range(self.vocab_size):
            token = self.id_to_token(i) or ""
            if token in special:
                out.append(b"")
            elif all(c in byte_of for c in token):
                out.append(bytes(byte_of[c] for c in token))
            elif len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
                out.append(bytes([int(token[3:5], 16)]))
            else:
                out.append(token.replace("\u2581", " ").encode("utf-8"))
        return out

    @property
    def stop_ids(self) -> list[int]:
        """Ids that end a generated turn: `</s>` and `<|im_end|>` (InternLM2 chat stops on it)."""
        ids = [self.eos_id, self.token_to_id(IM_END)]
        return list(dict.fromkeys(i for i in ids if i is not None))

    # ---- encoding and decoding -----------------------------------------------------------

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of `text`; special tokens written literally in `text` become single ids."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        # The post-processor in tokenizer.json is bypassed so add_bos means the same for every
        # file, whatever template it carries.
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return self._with_bos(ids) if add_bos else ids

    def encode_batch(self, texts: Sequence[str], add_bos: bool = False) -> list[list[int]]:
        """`encode` over many texts, in parallel inside `tokenizers`."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"encode_batch: texts[{i}] is {type(t).__name__}, expected str")
        encodings = self.backend.encode_batch(texts, add_special_tokens=False)
        return [self._with_bos(e.ids) if add_bos else e.ids for e in encodings]

    def _with_bos(self, ids: list[int]) -> list[int]:
        if self.bos_id is None:
            raise ValueError("add_bos=True but this tokenizer has no bos token")
        return [self.bos_id, *ids]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if i < 0 or i >= self.vocab_size)
            # tokenizers would silently drop it, hiding a bug upstream (e.g. a model whose
            # vocab is padded beyond the tokenizer's).
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.vocab_size})")
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    # ---- chat ----------------------------------------------------------------------------

    def render_chat(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """The prompt string for `messages`, identical to rendering `self.chat_template`."""
        if self.chat_template in (None, INTERNLM2_CHAT_TEMPLATE):
            return render_chat(messages, add_generation_prompt, bos_token=self.bos_token or "")
        return render_template(
            self.chat_template, messages, add_generation_prompt,
            bos_token=self.bos_token, eos_token=self.eos_token,
            unk_token=self.unk_token, pad_token=self.pad_token,
        )

    def encode_chat(
        self, messages: Sequence[Message], add_generation_prompt: bool = True
    ) -> list[int]:
        """Ids of the rendered chat; `<s>` comes from the template, so no extra bos is added."""
        return self.encode(self.render_chat(messages, add_generation_prompt))

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, bos={self.bos_token!r}, "
                f"eos={self.eos_token!r}, specials={len(self.special_tokens)})")


def _byte_level_decoding() -> dict[str, int]:
    """GPT-2's byte-level alphabet (the `tokenizers` ByteLevel alphabet), character -> byte: printable
    bytes stand for themselves, the others (controls, space, 0x7F-0xA0, 0xAD) for 256 + their rank
    among them."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    mapping = {chr(b): b for b in printable}
    mapping.update({chr(256 + k): b for k, b in enumerate(others)})
    return mapping

