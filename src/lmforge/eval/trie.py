"""Token tries: many scoring requests in one forward pass, each computing what it would alone.

A multiple-choice item is one context and several continuations; a few-shot benchmark repeats
the same shots before every item. Stored as a trie, every shared prefix is a single run of
tokens. Laid out in preorder, a node's subtree is the contiguous column range [column, end), so
the attention rule "a token sees its ancestors and itself" is the mask `k <= q < end[k]`, and a
token's RoPE position is its depth: exactly its position in its request alone.

The layouts reach the model through its KV-cache protocol (`prepare` -> positions, mask and the
length that sets the dynamic-NTK base, `update` per layer, `advance`; see lmforge.model.cache), so
the model code is untouched:

- `TrieAttention` hands the model the trie's positions and mask, optionally behind the cached
  keys/values of a prefix that every row shares (the few-shot examples of a subject);
- `PrefixCapture` runs that shared prefix once, causally, and keeps each layer's keys/values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from lmforge.model.attention import AttentionMask
from lmforge.model.cache import CacheStep


@dataclass
class Tree:
    """Requests that share one context: `branches[j]` is a continuation, `owners[j]` the request
    slots that asked for it (identical requests are computed once)."""

    context: list[int]
    branches: list[list[int]] = field(default_factory=list)
    owners: list[list[int]] = field(default_factory=list)


class Trie:
    """The token trie of one packed row of trees."""

    def __init__(self):
        self.token: list[int] = []
        self.children: list[dict[int, int]] = [{}]  # node 0 is the virtual root
        self.trees: list[tuple[Tree, int, list[list[int]]]] = []  # tree, its context's last node, branch nodes

    def __len__(self) -> int:
        return len(self.token)

    def _insert(self, path: Sequence[int], at: int = 0) -> list[int]:
        nodes = []
        for t in path:
            nxt = self.children[at].get(t)
            if nxt is None:
                self.token.append(t)
                self.children.append({})
                nxt = self.children[at][t] = len(self.token)
            nodes.append(nxt)
            at = nxt
        return nodes

    def cost(self, tree: Tree) -> int:
        """Nodes that adding `tree` would create (an upper bound: branches are not compared)."""
        at, matched = 0, 0
        for t in tree.context:
            at = self.children[at].get(t)
            if at is None:
                break
            matched += 1
        return len(tree.context) - matched + sum(len(b) - 1 for b in tree.branches)

    def add(self, tree: Tree) -> None:
        last = self._insert(tree.context)[-1]
        # A continuation's last token is only predicted, never fed: its branch holds the others.
        self.trees.append((tree, last, [self._insert(b[:-1], last) for b in tree.branches]))

    def is_path(self) -> bool:
        """No branching: the row is one plain sequence, for which causal attention suffices."""
        return all(len(c) <= 1 for c in self.children)

    def layout(self) -> tuple[list[int], list[int], list[int], list[int], dict[int, int]]:
        """(tokens, depths, subtree ends, parent columns (-1: a root)) in preorder, and node -> column."""
        tokens: list[int] = []
        depths: list[int] = []
        ends: list[int] = []
        parents: list[int] = []
        column: dict[int, int] = {}
        stack = [(child, 0, -1) for child in reversed(self.children[0].values())]
        while stack:
            node, depth, parent = stack.pop()
            if node < 0:  # popped after the whole subtree: it ends here
                ends[column[-node]] = len(tokens)
                continue
            column[node] = len(tokens)
            tokens.append(self.token[node - 1])
            depths.append(depth)
            ends.append(0)
            parents.append(parent)
            stack.append((-node, depth, parent))
            stack.extend((child, depth + 1, column[node]) for child in reversed(self.children[node].values()))
        return tokens, depths, ends, parents, column


def trie_mask(ends: torch.Tensor) -> torch.Tensor:
    """(B, T, T) bool: query q sees key k when k <= q < end[k] (k is q or one of its ancestors)."""
    T = ends.shape[1]
    idx = torch.arange(T, device=ends.device)
    return (idx[None, None, :] <= idx[None, :, None]) & (idx[None, :, None] < ends[:, None, :])


class TrieAttention:
    """KV-cache protocol object that feeds the model a trie layout (no caching of its own).

    prefix: per layer (k, v) of shape (1, Hkv, P, D) that every row attends to in full, placed
    before the row's own tokens; `positions` already count from P then.
    parents: (B, T) each token's parent column, -1 for a root (`Trie.layout`): the key before it, for
    smeared keys (after a prefix, a root's is the prefix's last).
    """

    def __init__(self, positions: torch.Tensor, mask: torch.Tensor, parents: torch.Tensor,
                 prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None):
        B, T = positions.shape
        self.key_prev = parents
        if prefix is not None:
            P = prefix[0][0].shape[2]
            seen = torch.ones(B, T, P, dtype=torch.bool, device=mask.device)
            mask = torch.cat([seen, mask], dim=2)
            before = torch.arange(-1, P - 1, device=mask.device).expand(B, P)
            self.key_prev = torch.cat([before, torch.where(self.key_prev >= 0, self.key_prev + P, P - 1)], dim=1)
        self.positions, self.mask, self.prefix = positions, mask[:, None], prefix
        self.rope_len = int(positions.max()) + 1  # the longest path: each request's own length

    def prepare(self, n_new: int, padding_mask=None) -> CacheStep:
        return CacheStep(self.positions, AttentionMask("dense", dense=self.mask, key_prev=self.key_prev),
                         rope_len=self.rope_len)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prefix is None:
            return k, v
        pk, pv = self.prefix[layer]
        B = k.shape[0]
        return torch.cat([pk.expand(B, -1, -1, -1), k], dim=2), torch.cat([pv.expand(B, -1, -1, -1), v], dim=2)

    def advance(self, n_new: int) -> None:
        pass


class PrefixCapture:
    """KV-cache protocol object for one causal pass over a shared prefix; keeps its keys/values."""

    def __init__(self, length: int, device: torch.device):
        self.positions = torch.arange(length, device=device)[None]
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []

    def prepare(self, n_new: int, padding_mask=None) -> CacheStep:
        return CacheStep(self.positions, AttentionMask("causal"), rope_len=self.positions.shape[1])

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.kv.append((k, v))
        return k, v

    def advance(self, n_new: int) -> None:
        pass
