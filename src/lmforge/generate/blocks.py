"""The bookkeeping of a paged KV cache: a fixed budget of blocks, reference counts and the prefix cache.

vLLM's PagedAttention idea (Kwon et al., SOSP 2023): the key/value memory is a pool of blocks of
`block_size` tokens, a sequence holds a list of blocks (its block table) and grows one block at a
time, so no request reserves memory for tokens it may never generate and nothing is reallocated.

Prefix caching: a full block is identified by a hash of every token up to its end (the hash of the
previous block and the block's own tokens), so two prompts that share a system prompt share its
blocks. A block whose last user leaves stays cached, evictable in least-recently-used order, until
a new block is needed and no free one is left. This module is plain Python: it knows block numbers,
not tensors (lmforge.generate.paged holds those).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence


class OutOfBlocks(RuntimeError):
    """No free or evictable block is left: the scheduler queues or preempts instead."""


def block_hashes(tokens: Sequence[int], block_size: int) -> list[int]:
    """The chain hash of each full block of `tokens`: block i's hash covers tokens 0 .. (i+1) * size."""
    hashes, h = [], 0
    for start in range(0, len(tokens) - block_size + 1, block_size):
        h = hash((h, tuple(tokens[start:start + block_size])))
        hashes.append(h)
    return hashes


class BlockManager:
    def __init__(self, n_blocks: int, block_size: int, reserved: int = 0):
        """Blocks `reserved` .. n_blocks - 1 are handed out (the first ones are the cache's scratch)."""
        if n_blocks - reserved < 1 or block_size < 1:
            raise ValueError(f"a KV cache needs at least one block of at least one token "
                             f"(got {n_blocks - reserved} blocks of {block_size})")
        self.block_size = block_size
        self.n_blocks = n_blocks - reserved
        self.free: deque[int] = deque(range(reserved, n_blocks))
        self.refs: dict[int, int] = {}  # blocks in use -> number of sequences holding them
        self.by_hash: dict[int, int] = {}  # cached full blocks: hash -> block
        self.hash_of: dict[int, int] = {}  # block -> its hash, for cached blocks
        self.evictable: OrderedDict[int, None] = OrderedDict()  # cached blocks nobody holds, LRU first

    @property
    def available(self) -> int:
        """Blocks that `allocate` can hand out now (free, or cached and unused)."""
        return len(self.free) + len(self.evictable)

    @property
    def used(self) -> int:
        return len(self.refs)

    def match_prefix(self, hashes: Sequence[int]) -> list[int]:
        """The cached blocks of the longest run of leading full-block hashes; each is now held."""
        blocks = []
        for h in hashes:
            block = self.by_hash.get(h)
            if block is None:
                break
            self._hold(block)
            blocks.append(block)
        return blocks

    def share(self, blocks: Sequence[int]) -> None:
        """Hold blocks that another sequence holds (a copy of its prompt)."""
        for block in blocks:
            self._hold(block)

    def allocate(self) -> int:
        """A block for one sequence: a free one, else the least recently used cached one."""
        if self.free:
            block = self.free.popleft()
        elif self.evictable:
            block, _ = self.evictable.popitem(last=False)
            del self.by_hash[self.hash_of.pop(block)]
        else:
            raise OutOfBlocks(f"all {self.n_blocks} KV blocks are in use")
        self.refs[block] = 1
        return block

    def register(self, block: int, h: int) -> None:
        """A full block's content is final: later prompts with the same prefix may reuse it."""
        if h in self.by_hash or block in self.hash_of:
            return  # the same prefix cached twice (two prompts ran at once): keep the first
        self.by_hash[h] = block
        self.hash_of[block] = h

    def release(self, blocks: Sequence[int]) -> None:
        """A sequence lets go of its blocks: cached ones stay reusable, the others are free again."""
        for block in blocks:
            self.refs[block] -= 1
            if self.refs[block] == 0:
                del self.refs[block]
                if block in self.hash_of:
                    self.evictable[block] = None
                else:
                    self.free.append(block)

    def forget_prefixes(self) -> None:
        """Empty the prefix cache (the model's weights changed, so the cached keys and values are stale):
        unused cached blocks are free again, held ones are freed when their last user lets go."""
        self.free.extend(self.evictable)
        self.evictable.clear()
        self.by_hash.clear()
        self.hash_of.clear()

    def _hold(self, block: int) -> None:
        if block in self.refs:
            self.refs[block] += 1
        else:
            self.evictable.pop(block)
            self.refs[block] = 1
