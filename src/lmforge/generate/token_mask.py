"""Which tokens keep a reply inside a JSON grammar: the per-step masks of structured outputs.

Constrained decoding (outlines, xgrammar, llguidance; how vLLM, SGLang and LMDeploy serve OpenAI's
`response_format`) sets to -inf, before sampling, the logit of every token whose bytes would leave
the grammar, and lets the end-of-turn tokens through only once the value is whole. The masked
distribution is the model's own, renormalised over what is allowed; greedy decoding picks the best
allowed token.

A mask is the set of tokens whose every byte the grammar accepts from the current state
(lmforge.generate.json_grammar). Checking each of the vocabulary's tokens byte by byte at every step
would cost V x (token length) grammar steps, so:

* the tokens are kept in a byte **trie** and walked depth first from the state, a branch dropped at
  the first byte the grammar refuses; outside a string few bytes are allowed, so the walk is short;
* inside a string nearly every token is allowed: a **plain** token (whole UTF-8 characters, none of
  them '"', '\\' or a control character) is allowed exactly when the string has room for its
  characters, which is one vectorised comparison; only the other tokens (a few percent) are walked;
* masks are **cached by state** (a key's position, a number's phase, ... recur at every step). A
  string's length is part of its state, but while the string is longer than its minLength and
  further from its maxLength than the longest token, the mask does not depend on it: the cache key
  leaves it out then, so a long string costs one mask, not one per step.

`TokenGrammar` is one schema over one vocabulary (shared by requests with the same schema);
`Matcher` is one request's position in it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence

import torch

from lmforge.generate.json_grammar import BACKSLASH, QUOTE, SPACE, JsonGrammar, State
from lmforge.generate.json_schema import compile_schema

MASK_CACHE = 4096
UNBOUNDED = 1 << 30


def _trie(token_bytes: Sequence[bytes], ids) -> tuple[dict, list]:
    """(children by byte, ids ending here) nodes over the tokens `ids`."""
    root: tuple[dict, list] = ({}, [])
    for i in ids:
        node = root
        for b in token_bytes[i]:
            node = node[0].setdefault(b, ({}, []))
        node[1].append(i)
    return root


def _plain(token: bytes) -> bool:
    """Whole UTF-8 characters, none of them '"', '\\' or a control character: string content as it is."""
    try:
        token.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= SPACE and b not in (QUOTE, BACKSLASH) for b in token)


class Vocabulary:
    """A tokenizer's tokens as bytes, in the tries and tables the masks are made from (built once)."""

    def __init__(self, token_bytes: Sequence[bytes]):
        self.size = len(token_bytes)
        ids = [i for i, t in enumerate(token_bytes) if t]  # special tokens (b"") never match a grammar
        plain = [i for i in ids if _plain(token_bytes[i])]
        plain_set = set(plain)
        self.trie = _trie(token_bytes, ids)
        self.special_trie = _trie(token_bytes, [i for i in ids if i not in plain_set])
        self.plain = torch.zeros(self.size, dtype=torch.bool)
        self.plain[plain] = True
        # characters in each token (of the plain ones; the others are walked byte by byte)
        self.chars = torch.tensor([len(t.decode("utf-8", "replace")) for t in token_bytes], dtype=torch.long)
        self.token_bytes = list(token_bytes)
        self.longest = max(map(len, token_bytes), default=0)  # bytes, so at least the characters

    @classmethod
    def of(cls, tokenizer) -> Vocabulary:
        """The tokenizer's vocabulary, made once per tokenizer object."""
        vocab = getattr(tokenizer, "_grammar_vocabulary", None)
        if vocab is None:
            vocab = cls(tokenizer.token_bytes())
            tokenizer._grammar_vocabulary = vocab
        return vocab


class TokenGrammar:
    """A schema's grammar over a vocabulary: masks by state, with a cache."""

    def __init__(self, schema, vocab: Vocabulary):
        self.grammar = JsonGrammar(*compile_schema(schema))
        self.vocab = vocab
        self._masks: OrderedDict[State, torch.Tensor] = OrderedDict()

    def allowed(self, state: State) -> torch.Tensor:
        """(V,) bool: the tokens whose bytes the grammar accepts from `state` (stop tokens not included)."""
        key = self._key(state)
        mask = self._masks.get(key)
        if mask is not None:
            self._masks.move_to_end(key)
            return mask
        mask = self._compute(state)
        self._masks[key] = mask
        if len(self._masks) > MASK_CACHE:
            self._masks.popitem(last=False)
        return mask

    def _key(self, state: State) -> State:
        """The state with the length of a string left out where no token's mask depends on it."""
        if not any(stack[-1][0] == "S" for stack in state):
            return state
        key = set()
        for stack in state:
            top = stack[-1]
            if top[0] == "S" and top[3] >= 0:
                node = self.grammar.nodes[top[1]]
                if top[3] >= node.min and (node.max is None or node.max - top[3] > self.vocab.longest):
                    stack = stack[:-1] + ((*top[:3], -1),)
            key.add(stack)
        return frozenset(key)

    def _compute(self, state: State) -> torch.Tensor:
        g, vocab = self.grammar, self.vocab
        in_string = frozenset(s for s in state if s[-1][0] == "S" and s[-1][2] == "c")
        ids: list[int] = []
        mask = torch.zeros(vocab.size, dtype=torch.bool)
        if in_string:
            room = max(self._room(s[-1]) for s in in_string)
            mask |= vocab.plain & (vocab.chars <= room)
            self._walk(vocab.special_trie, in_string, ids)
        rest = state - in_string
        if rest:
            self._walk(vocab.trie, rest, ids)
        if ids:
            mask[ids] = True
        return mask

    def _room(self, frame) -> int:
        node = self.grammar.nodes[frame[1]]
        return UNBOUNDED if node.max is None else node.max - frame[3]

    def _walk(self, node, state: State, ids: list[int]) -> None:
        step = self.grammar.step
        for byte, child in node[0].items():
            nxt = step(state, byte)
            if nxt:
                ids.extend(child[1])
                if child[0]:
                    self._walk(child, nxt, ids)


class Matcher:
    """One request's place in a grammar: the mask for its next token, advanced by each token chosen."""

    def __init__(self, grammar: TokenGrammar, stop_ids: Sequence[int] = ()):
        self.grammar, self.stop_ids = grammar, list(stop_ids)
        self.state = grammar.grammar.initial()

    def mask(self) -> torch.Tensor:
        """(V,) bool of the tokens allowed next; the stop tokens once the value is whole."""
        mask = self.grammar.allowed(self.state)
        if self.stop_ids and self.grammar.grammar.accepting(self.state):
            mask = mask.clone()
            mask[self.stop_ids] = True
        return mask

    def advance(self, token_id: int) -> bool:
        """Move past the token; False (and no move) if its bytes break the grammar."""
        if token_id in self.stop_ids:
            return True
        state = self.grammar.grammar.advance(self.state, self.grammar.vocab.token_bytes[token_id])
        if not state:
            return False
        self.state = state
        return True

    @property
    def finished(self) -> bool:
        """The value is whole and nothing may follow it."""
        return self.grammar.grammar.finished(self.state)


def schema_key(schema) -> str:
    return json.dumps(schema, sort_keys=True)
