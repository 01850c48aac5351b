"""Pre-tokenization for the byte-level BPE that lmforge trains.

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §1, "Tokenizer".

InternLM2's tokenizer starts from cl100k (GPT-4) and adds Chinese tokens; digits are split one by
one. The pipeline here reproduces those properties for a tokenizer trained from scratch:

1. runs of CJK characters (Han, kana, hangul) become their own pieces, so Chinese merges only
   with Chinese and never glues onto Latin letters, digits or punctuation;
2. every digit is its own piece, so numbers are spelled digit by digit (arithmetic-friendly,
   and no arbitrary number chunks in the vocabulary);
3. the rest is split by a cl100k-like regex (contractions, letter runs with one leading
   non-letter, punctuation runs, newline runs, whitespace runs);
4. ByteLevel (without its own GPT-2 regex) maps every byte to a printable character, so any
   Unicode string, including NUL, lone combining marks and emoji, encodes and decodes exactly.

There is no normalizer: normalizing (NFKC, stripping, lowercasing) would break the exact round
trip that training data and generation rely on.
"""

from __future__ import annotations

from tokenizers import Regex, decoders, pre_tokenizers

# Han ideographs (incl. 々 and 〇), Japanese kana plus the prolonged sound mark ー (script
# "Common", but always written inside kana words) and Korean hangul.
CJK_RUN = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\x{30FC}]+"

DIGIT = r"\p{N}"

# cl100k's pattern, with its 1-3 digit groups dropped because digits were isolated before.
WORD_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)


def byte_level_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """CJK isolation, digit splitting, the cl100k-like split, then byte-level mapping."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CJK_RUN), behavior="isolated"),
            pre_tokenizers.Split(Regex(DIGIT), behavior="isolated"),
            pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated"),
            # use_regex=False: the splitting above replaces GPT-2's regex.
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def byte_level_decoder() -> decoders.Decoder:
    return decoders.ByteLevel()
