"""Log-likelihoods of continuations, the "PPL" mode of OpenCompass.

Paper: InternLM2 report (its OpenCompass evaluation), arXiv 2403.17297; docs/papers.md §9.

For each request (context, continuation) the result is the summed log-probability of the
continuation's tokens given the context, and whether greedy decoding would have produced them.

Tokenisation follows lm-evaluation-harness exactly, so the two agree to float precision:
trailing whitespace of the context moves to the continuation; the continuation's tokens are
those of `encode(context + continuation)` past `len(encode(context))`; BOS is prepended; a
sequence longer than `max_length + 1` tokens loses its oldest tokens.

Speed comes from computing each distinct token once (lmforge.eval.trie), which lm-eval's HF
backend does not do:

- **shared contexts**: the choices of an item branch off one copy of its context;
- **shared few-shot prefixes**: items whose contexts share a long prefix (MMLU's five examples of
  a subject) run that prefix once and attend to its cached keys/values;
- **packing**: several items share a row of the batch, so there is little padding;
- **a sparse LM head**: logits only where a continuation token is predicted.

Each request still computes exactly what it would alone: a token sees only its own request's
tokens, its position is its position in that request, and with dynamic NTK a request longer
than the trained window runs on its own, so that its RoPE base is the one it would get alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lmforge.eval.trie import PrefixCapture, Tree, Trie, TrieAttention, trie_mask
from lmforge.model.logprobs import target_logprobs

# Items whose contexts share at least this many tokens run the shared part once (MMLU's 5-shot
# prefix is ~500 tokens; contexts that merely start alike share a handful).
MIN_SHARED_PREFIX = 32


def split_pair(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace to the continuation (lm-eval's word-boundary rule)."""
    n = len(context) - len(context.rstrip())
    if n:
        continuation = context[-n:] + continuation
        context = context[:-n]
    return context, continuation


def encode_requests(tokenizer, requests: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(context ids with BOS, continuation ids) for each request, tokenised as lm-eval does."""
    prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    pairs = [split_pair(c, x) for c, x in requests]
    contexts = tokenizer.encode_batch([c for c, _ in pairs])
    wholes = tokenizer.encode_batch([c + x for c, x in pairs])
    conts = tokenizer.encode_batch([x for _, x in pairs])
    out = []
    for (context, _), ctx, whole, cont in zip(pairs, contexts, wholes, conts):
        if context:
            out.append(([prefix, *ctx], whole[len(ctx):]))
        else:  # an empty context conditions on the prefix token alone
            out.append(([prefix], cont))
    return out


def _build_trees(encoded: Sequence[tuple[list[int], list[int]]], max_length: int, ntk_window: int | None
                 ) -> tuple[list[Tree], list[Tree]]:
    """Group requests by context into trees (packable) and lone sequences (one per forward)."""
    trees: dict[tuple[int, ...], Tree] = {}
    alone: list[Tree] = []
    for slot, (ctx, cont) in enumerate(encoded):
        if not cont:
            raise ValueError(f"request {slot}: the continuation encodes to no tokens")
        if len(cont) > max_length:
            raise ValueError(f"request {slot}: the continuation has {len(cont)} tokens, more than "
                             f"max_length={max_length}")
        full = ctx + cont
        if len(full) > max_length + 1:  # truncate on the left, as lm-eval does
            ctx = full[-(max_length + 1):][:-len(cont)]
        if ntk_window is not None and len(ctx) + len(cont) - 1 > ntk_window:
            # Dynamic NTK sets RoPE's base from the longest sequence of a pass: run this one alone.
            alone.append(Tree(ctx, [cont], [[slot]]))
            continue
        tree = trees.setdefault(tuple(ctx), Tree(list(ctx)))
        if cont in tree.branches:
            tree.owners[tree.branches.index(cont)].append(slot)
        else:
            tree.branches.append(cont)
            tree.owners.append([slot])
    return list(trees.values()), alone


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _prefix_groups(trees: list[Tree]) -> list[tuple[int, list[Tree]]]:
    """Runs of trees, in context order, whose contexts share a prefix of at least
    MIN_SHARED_PREFIX tokens: (shared length, trees); 0 for the trees that share nothing much."""
    groups: list[tuple[int, list[Tree]]] = []
    loose: list[Tree] = []
    run: list[Tree] = []
    shared = 0
    for tree in sorted(trees, key=lambda t: t.context) + [None]:
        n = _common_length(run[0].context, tree.context) if run and tree is not None else 0
        if run and n >= MIN_SHARED_PREFIX and n >= shared // 2:  # joining must not halve the prefix
            run.append(tree)
            shared = min(shared, n)
            continue
        if len(run) > 1:
            groups.append((shared, run))
        else:
            loose += run
        run, shared = ([tree], len(tree.context)) if tree is not None else ([], 0)
    return groups + ([(0, loose)] if loose else [])


def _pack(trees: list[Tree], row_tokens: int) -> list[Trie]:
    """Trees in context order fill rows of about `row_tokens` trie nodes (at least one tree each)."""
    rows: list[Trie] = []
    for tree in sorted(trees, key=lambda t: t.context):
        if not rows or (len(rows[-1]) and len(rows[-1]) + rows[-1].cost(tree) > row_tokens):
            rows.append(Trie())
        rows[-1].add(tree)
    return rows


def _batch(rows: list[Trie], batch_tokens: int) -> list[list[Trie]]:
    """Rows of similar length together, while rows x longest row stays within batch_tokens."""
    batches: list[list[Trie]] = []
    widest = 0
    for row in sorted(rows, key=len, reverse=True):
        if batches and (len(batches[-1]) + 1) * widest <= batch_tokens:
            batches[-1].append(row)
        else:
            batches.append([row])
            widest = len(row)
    return batches


@torch.inference_mode()
def _capture_prefix(model, prefix: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    device = next(model.parameters()).device
    capture = PrefixCapture(len(prefix), device)
    model.forward_hidden(torch.tensor([prefix], device=device), kv_cache=capture)
    return capture.kv


@torch.inference_mode()
def _score_batch(model, rows: list[Trie], pad_id: int, results: list,
                 prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None, offset: int = 0) -> None:
    """Score every request of `rows`; with `prefix`, the rows continue a shared prefix of
    `offset` tokens whose keys/values are given."""
    device = next(model.parameters()).device
    B, T = len(rows), max(len(r) for r in rows)
    tokens = torch.full((B, T), pad_id, dtype=torch.long)
    positions = torch.zeros((B, T), dtype=torch.long)
    ends = torch.arange(1, T + 1).repeat(B, 1)  # padding: a subtree of one, so it sees only itself
    parents = torch.full((B, T), -1, dtype=torch.long)
    pick_b, pick_t, targets, seg = [], [], [], []  # logits to read, and the token each must predict
    branch_owners: list[list[int]] = []
    for b, row in enumerate(rows):
        row_tokens, depths, row_ends, row_parents, column = row.layout()
        n = len(row_tokens)
        tokens[b, :n] = torch.tensor(row_tokens)
        positions[b, :n] = torch.tensor(depths) + offset
        ends[b, :n] = torch.tensor(row_ends)
        parents[b, :n] = torch.tensor(row_parents)
        for tree, last, branch_nodes in row.trees:
            for cont, nodes, owners in zip(tree.branches, branch_nodes, tree.owners):
                # Token k of the continuation is predicted at the context's last node (k = 0) or
                # at the node of the continuation's token k - 1.
                reads = [column[last], *(column[x] for x in nodes)]
                pick_b += [b] * len(reads)
                pick_t += reads
                targets += cont
                seg += [len(branch_owners)] * len(reads)
                branch_owners.append(owners)
    if prefix is None and all(row.is_path() for row in rows):
        # Plain sequences (e.g. single-token choices such as MMLU's letters all read the context's
        # last token): causal attention computes the same, faster; right padding affects nothing.
        hidden = model.forward_hidden(tokens.to(device))
    else:
        layout = TrieAttention(positions.to(device), trie_mask(ends).to(device), parents.to(device), prefix)
        hidden = model.forward_hidden(tokens.to(device), kv_cache=layout)
    picked = hidden[torch.tensor(pick_b, device=device), torch.tensor(pick_t, device=device)]
    token_lp, greedy = target_logprobs(picked, model.head_weight(), torch.tensor(targets, device=device))
    token_lp = token_lp.double()
    seg_t = torch.tensor(seg, device=device)
    n = len(branch_owners)
    sums = torch.zeros(n, dtype=torch.float64, device=device).index_add_(0, seg_t, token_lp)
    misses = torch.zeros(n, dtype=torch.long, device=device).index_add_(0, seg_t, (~greedy).long())
    for owners, total, miss in zip(branch_owners, sums.tolist(), misses.tolist()):
        for slot in owners:
            results[slot] = (total, miss == 0)


def auto_row_tokens(cfg) -> int:
    """Trie nodes per row. Masked-out attention still costs ~2 dim multiply-adds per token pair
    while a token's other work is ~12 dim^2, so rows of ~4 dim tokens keep the waste small
    (measured on the tiny preset: 512 nodes beat 256 and 1024 on MMLU and HellaSwag)."""
    return max(256, min(4096, 4 * cfg.dim))


def score_encoded(model, encoded: Sequence[tuple[list[int], list[int]]], *, max_length: int,
                  pad_id: int = 0, row_tokens: int | None = None, batch_tokens: int = 8192,
                  progress: Callable[[int], None] | None = None) -> list[tuple[float, bool]]:
    """(log-likelihood, is_greedy) of each pre-tokenised (context, continuation) request."""
    cfg = model.cfg
    row_tokens = row_tokens or auto_row_tokens(cfg)
    trees, alone = _build_trees(encoded, max_length, cfg.max_seq_len if cfg.rope_scaling == "dynamic" else None)
    results: list = [None] * len(encoded)

    def run(rows: list[Trie], prefix=None, offset: int = 0) -> None:
        _score_batch(model, rows, pad_id, results, prefix, offset)
        if progress is not None:
            progress(sum(len(o) for row in rows for tree, _, _ in row.trees for o in tree.owners))

    for tree in alone:
        row = Trie()
        row.add(tree)
        run([row])
    for shared, group in _prefix_groups(trees):
        if shared == 0:
            for rows in _batch(_pack(group, row_tokens), batch_tokens):
                run(rows)
            continue
        # Cache all but the last shared token, so every tree keeps at least one token of its own.
        cut = shared - 1
        prefix = _capture_prefix(model, group[0].context[:cut])
        rest = [Tree(t.context[cut:], t.branches, t.owners) for t in group]
        for rows in _batch(_pack(rest, row_tokens), batch_tokens):
            run(rows, prefix, cut)
    return results


def loglikelihood(model, tokenizer, requests: Sequence[tuple[str, str]], *, max_length: int | None = None,
                  row_tokens: int | None = None, batch_tokens: int = 8192,
                  progress: Callable[[int], None] | None = None) -> list[tuple[float, bool]]:
    """(log-likelihood, is_greedy) of each (context, continuation) text pair.

    max_length: the longest input fed to the model (default: the model's trained window);
    row_tokens: trie nodes per packed row (default: `auto_row_tokens`); batch_tokens: rows x row
    length per forward pass.
    """
    encoded = encode_requests(tokenizer, requests)
    return score_encoded(model, encoded, max_length=max_length or model.cfg.max_seq_len,
                         pad_id=tokenizer.pad_id or 0, row_tokens=row_tokens, batch_tokens=batch_tokens,
                         progress=progress)
