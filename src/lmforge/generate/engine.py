"""The inference engine: continuous batching over a paged KV cache, for requests that come and go.

One engine serves the chat server, RL rollouts and data synthesis: one rollout engine, not a copy per
algorithm. Each `step()`:

1. drops cancelled requests (their blocks are free at once);
2. admits waiting requests in arrival order while the KV budget holds their prompts, the batch has
   room and the step's prefill token budget is not spent; a prompt's leading full blocks that an
   earlier prompt computed, or that a prompt admitted earlier in the same step is about to compute,
   are taken from the prefix cache instead (a shared system prompt is computed once); a sequence
   with the same tokens as one admitted in the same step (the copies of a prompt that a GRPO group
   samples) is not computed at all: it shares the blocks, copies the last partial one, and draws
   its first token from the same logits (vLLM's parallel sampling);
3. prefills the admitted prompts in one forward, packed into one row without padding (each attends
   to its own tokens only), and samples their first tokens;
4. decodes one token for every other running request in one forward, each at its own length. A
   request that needs a new block when none is left preempts the most recently admitted one,
   which goes back to the queue and is recomputed later (vLLM's recompute preemption), so a full
   KV budget queues work instead of failing.

Requests join and leave the running batch at every step. Sampling is per request (temperature,
top-k, top-p, repetition penalty, seed, stop strings and tokens, max tokens, log-probabilities, and a
JSON Schema the reply must match: structured outputs, lmforge.generate.token_mask).
The engine is single-threaded: the server feeds it from one thread (lmforge.serve).

A request may bring its prompt's input embeddings (`prompt_embeds`: image features spliced among
the token embeddings by a vision-language model) and float RoPE positions (`prompt_positions`:
InternVL's V2PE, where an image token advances the position by a delta < 1; InternVL3 report §2.2,
docs/papers.md §10). The packed prefill splices those embeddings into its row, and the request's
generated tokens continue from its last prompt position + 1. Such a request keeps the prefix cache
out of it: its keys depend on more than its token ids (an image's placeholders are all the same id).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from lmforge.generate.blocks import OutOfBlocks, block_hashes
from lmforge.generate.paged import DecodeBatch, KVPool, PackedPrefill
from lmforge.generate.sampling import Choice, SamplingParams, sample_rows
from lmforge.generate.text import StopText
from lmforge.generate.token_mask import Matcher, TokenGrammar, Vocabulary, schema_key
from lmforge.model.linear import kernels_enabled, prepare_kernels

log = logging.getLogger(__name__)


@dataclass
class Event:
    """What one step produced for one request."""

    request_id: str
    token_id: int | None  # None on the final event of a request that stopped on a stop token, or ended
    text: str  # newly final text
    finish_reason: str | None = None  # "stop", "length", "cancelled", or None while running
    choice: Choice | None = None  # the token's log-probabilities, when asked for


@dataclass(eq=False)  # identity: the engine looks requests up in its lists at every step
class Request:
    id: str
    prompt: list[int]
    params: SamplingParams
    text: StopText
    generator: torch.Generator | None
    output: list[int] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    cached: int = 0  # tokens whose keys/values are in the cache
    registered: int = 0  # full blocks offered to the prefix cache
    hashes: list[int] = field(default_factory=list)
    arrived: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finish_reason: str | None = None
    cancelled: bool = False
    embeds: torch.Tensor | None = None  # (len(prompt), dim) input embeddings of the prompt
    positions: torch.Tensor | None = None  # (len(prompt),) float RoPE positions of the prompt
    shift: float = 0.0  # RoPE position minus index of the tokens after the prompt (with `positions`)
    matcher: Matcher | None = None  # where the reply is in its JSON grammar (params.json_schema)
    twin: Request | None = None  # until its first token: the request of this step it copies (same tokens)

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.output

    @property
    def private(self) -> bool:
        """Keys and values that depend on more than the token ids: no prefix cache for them."""
        return self.embeds is not None or self.positions is not None

    def rope_positions(self, start: int, stop: int) -> torch.Tensor:
        """Float RoPE positions of tokens start .. stop - 1 (prompt and output) of a request with
        `positions`."""
        n = len(self.prompt)
        after = torch.arange(max(start, n), max(stop, n), dtype=torch.float64, device=self.positions.device)
        return torch.cat([self.positions[start:stop], (after + self.shift).float()])


@dataclass
class EngineStats:
    requests: int = 0
    finished: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefix_hit_tokens: int = 0
    preemptions: int = 0
    steps: int = 0


class Engine:
    def __init__(self, model, tokenizer=None, *, kv_blocks: int = 512, block_size: int = 16, max_batch: int = 64,
                 max_prefill_tokens: int = 4096):
        """kv_blocks x block_size tokens is the KV memory budget (KVPool.blocks_for_bytes turns bytes into
        blocks); max_batch the most requests decoded at once; max_prefill_tokens the most prompt tokens
        prefilled in one step (bounds how long a step of the running requests can be held up)."""
        param = next(model.parameters())
        self.model, self.tokenizer = model.eval(), tokenizer
        self.pool = KVPool(model.cfg, kv_blocks, block_size, param.device, param.dtype)
        self.max_batch, self.max_prefill_tokens = max_batch, max_prefill_tokens
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.requests: dict[str, Request] = {}
        self.stats = EngineStats()
        self._ids = itertools.count()
        self._done: list[Event] = []  # events of requests that ended outside a step
        # One weight layout for the engine's life: the batch size changes at every step, and
        # re-laying out the weights at each change would cost more than it saves. The layout's
        # copies are checked against the weights whenever requests are admitted (RL updates the
        # weights between rounds of rollouts) or when told (`weights_updated`), not at every step.
        self._kernel_batch = 1 if max_batch == 1 else 8
        self._check_weights = True
        self._batch: DecodeBatch | None = None  # the running set's working copy, while it lasts
        self._batch_members: list[str] = []
        self._grammars: OrderedDict[str, TokenGrammar] = OrderedDict()  # by schema, the most recent 64

    @property
    def capacity_tokens(self) -> int:
        return self.pool.blocks.n_blocks * self.pool.block_size

    def add(self, prompt: Sequence[int], params: SamplingParams, request_id: str | None = None, *,
            prompt_embeds: torch.Tensor | None = None, prompt_positions: torch.Tensor | None = None) -> Request:
        """Queue a request; it starts at the next step that has room for it.

        prompt_embeds (len(prompt), dim): the prompt's input embeddings, used instead of the token
        embeddings (a vision-language model's image features); prompt_positions (len(prompt),):
        its RoPE positions, floats allowed (V2PE), default 0, 1, ...; the generated tokens then
        take the last one + 1, + 2, ...
        """
        if not prompt:
            raise ValueError("a prompt needs at least one token (start it with the BOS token)")
        embeds = positions = None
        if prompt_embeds is not None:
            if tuple(prompt_embeds.shape) != (len(prompt), self.model.cfg.dim):
                raise ValueError(f"prompt_embeds has shape {tuple(prompt_embeds.shape)}; a prompt of {len(prompt)} "
                                 f"tokens needs ({len(prompt)}, {self.model.cfg.dim})")
            embeds = prompt_embeds.detach().to(self.pool.device, self.pool.k[0].dtype)
        if prompt_positions is not None:
            if tuple(prompt_positions.shape) != (len(prompt),):
                raise ValueError(f"prompt_positions has shape {tuple(prompt_positions.shape)}; a prompt of "
                                 f"{len(prompt)} tokens needs ({len(prompt)},)")
            positions = prompt_positions.detach().to(self.pool.device, torch.float32)
        need = len(prompt) + params.max_new_tokens
        if need > self.capacity_tokens:
            raise ValueError(f"the prompt ({len(prompt)} tokens) and max_new_tokens ({params.max_new_tokens}) "
                             f"need {need} tokens of KV cache; the engine holds {self.capacity_tokens}")
        request_id = request_id if request_id is not None else f"req-{next(self._ids)}"
        if request_id in self.requests:
            raise ValueError(f"request id {request_id!r} is already in use")
        gen = None
        if params.seed is not None:
            gen = torch.Generator(device=self.pool.device).manual_seed(params.seed)
        matcher = None
        if params.json_schema is not None:
            matcher = Matcher(self.grammar(params.json_schema), params.stop_token_ids)
        req = Request(request_id, list(prompt), params, StopText(self.tokenizer, params.stop_strings), gen,
                      embeds=embeds, positions=positions, matcher=matcher)
        if positions is not None:  # generated tokens continue from the last prompt position + 1
            req.shift = float(positions[-1]) + 1 - len(prompt)
        self.stats.requests += 1
        self.stats.prompt_tokens += len(prompt)
        if params.max_new_tokens == 0:  # nothing to generate: done at the next step
            req.finish_reason = "length"
            self._done.append(Event(request_id, None, "", "length"))
            self.stats.finished += 1
            return req
        self.requests[request_id] = req
        self.waiting.append(req)
        return req

    def grammar(self, schema) -> TokenGrammar:
        """The token grammar of a JSON Schema over this engine's tokenizer (made once per schema);
        lmforge.generate.json_schema.SchemaError (a ValueError) for a schema it cannot enforce."""
        if self.tokenizer is None:
            raise ValueError("a JSON Schema constraint needs the engine's tokenizer")
        key = schema_key(schema)
        grammar = self._grammars.get(key)
        if grammar is None:
            grammar = self._grammars[key] = TokenGrammar(schema, Vocabulary.of(self.tokenizer))
            if len(self._grammars) > 64:
                self._grammars.popitem(last=False)
        self._grammars.move_to_end(key)
        return grammar

    def abort(self, request_id: str) -> None:
        """Cancel a request; its blocks are freed at the start of the next step."""
        req = self.requests.get(request_id)
        if req is not None:
            req.cancelled = True

    def weights_updated(self) -> None:
        """The model's weights changed: re-make the decode step's weight copies before the next step
        (admitting a request does it anyway), and empty the prefix cache, whose keys and values the
        old weights computed (requests already running keep theirs)."""
        self._check_weights = True
        self.pool.blocks.forget_prefixes()

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self._done)

    @property
    def kv_blocks_used(self) -> int:
        return self.pool.blocks.used

    # ---- one step ----------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[Event]:
        events, self._done = self._done + self._drop_cancelled(), []
        self.stats.steps += 1
        new = self._admit()
        self._check_weights |= bool(new)
        old = [r for r in self.running if r not in new]
        if new:
            events += self._prefill(new)
        if old:
            events += self._decode(old)
        return events

    def run(self) -> Iterator[Event]:
        """Step until every queued request is done."""
        while self.has_work():
            yield from self.step()

    def _drop_cancelled(self) -> list[Event]:
        events = []
        for req in [r for r in (*self.waiting, *self.running) if r.cancelled]:
            self._finish(req, "cancelled")
            events.append(Event(req.id, None, "", "cancelled"))
        return events

    def _admit(self) -> list[Request]:
        blocks, bs = self.pool.blocks, self.pool.block_size
        if self.waiting:
            self._flush()  # the prefix cache may match blocks the running requests are filling
        admitted, budget = [], self.max_prefill_tokens
        firsts: dict[tuple[int, ...], Request] = {}  # this step's prefilled sequences, by their tokens
        while self.waiting and len(self.running) < self.max_batch:
            req = self.waiting[0]
            tokens = req.tokens
            key = None if req.private else tuple(tokens)
            twin = firsts.get(key) if key is not None else None
            if twin is not None:
                # The same tokens as a sequence prefilled in this step (a GRPO group's copies, `n`
                # samples): its full blocks are shared and its partly filled last block copied after
                # the prefill, and its first token is drawn from the same logits. Nothing to compute.
                full, tail = divmod(len(tokens), bs)
                need = 1 if tail else 0
                if need > blocks.available - len(self.running):
                    break
                blocks.share(twin.blocks[:full])
                req.blocks = twin.blocks[:full] + [blocks.allocate() for _ in range(need)]
                req.hashes, req.cached, req.registered, req.twin = list(twin.hashes), full * bs, full * bs, twin
                self.stats.prefix_hit_tokens += len(tokens)
                admitted.append(self.waiting.popleft())
                self.running.append(req)
                continue
            hashes = [] if req.private else block_hashes(tokens, bs)
            # Cached leading blocks; at least the last token is computed, to give the next logits.
            cached = blocks.match_prefix(hashes[:(len(tokens) - 1) // bs])
            todo = len(tokens) - len(cached) * bs
            need = math.ceil(len(tokens) / bs) - len(cached)
            # Keep a block of room per running request, so that admitting does not force preemptions.
            if need > blocks.available - len(self.running) or (admitted and todo > budget):
                blocks.release(cached)
                break  # wait for room, in arrival order
            req.blocks = cached + [blocks.allocate() for _ in range(need)]
            req.hashes, req.cached = hashes, len(cached) * bs
            # The prompt's full blocks go into the prefix cache now, before they are computed: this
            # step's prefill writes every sequence's keys before any sequence reads, layer by layer,
            # so a copy of this prompt admitted next (GRPO's group, `n` samples) shares them at once.
            for i in range(len(cached), len(hashes)):
                blocks.register(req.blocks[i], hashes[i])
            req.registered = max(req.cached, len(hashes) * bs)
            self.stats.prefix_hit_tokens += req.cached
            budget -= todo
            admitted.append(self.waiting.popleft())
            self.running.append(req)
            if key is not None:
                firsts.setdefault(key, req)
        return admitted

    def _prefill(self, admitted: list[Request]) -> list[Event]:
        """The admitted prompts (past their cached blocks) packed into one row, no padding; given
        embeddings spliced in over the token embeddings, given positions used for RoPE. A copy of
        another admitted prompt (`twin`) is not computed: it takes that prompt's keys and logits."""
        reqs = [r for r in admitted if r.twin is None]
        parts = [r.tokens[r.cached:] for r in reqs]
        counts = [len(p) for p in parts]
        dev = self.pool.device
        ids = torch.tensor([[t for p in parts for t in p]], device=dev)
        positions = None
        if any(r.positions is not None for r in reqs):
            positions = [r.rope_positions(r.cached, r.cached + c) if r.positions is not None else None
                         for r, c in zip(reqs, counts)]
        batch = PackedPrefill(self.pool, [r.blocks for r in reqs], [r.cached for r in reqs], counts, positions)
        if any(r.embeds is not None for r in reqs):
            hidden = self.model.forward_hidden(inputs_embeds=self._spliced(ids, reqs, counts), kv_cache=batch)
        else:
            hidden = self.model.forward_hidden(ids, kv_cache=batch)
        last = torch.tensor(counts, device=dev).cumsum(0) - 1
        logits = self.model.logits(hidden[0, last])
        for r, c in zip(reqs, counts):
            r.cached += c
        twins = [r for r in admitted if r.twin is not None]
        if twins:
            self._copy_tails(twins)
            row = {r: i for i, r in enumerate(reqs)}
            logits = logits[[row[r.twin if r.twin is not None else r] for r in admitted]]
            for r in twins:
                r.cached, r.twin = len(r.tokens), None
        return self._sampled(admitted, logits)

    def _copy_tails(self, twins: list[Request]) -> None:
        """Each copy's partly filled last block: the keys and values of its twin's, in every layer."""
        bs, src, dst = self.pool.block_size, [], []
        for r in twins:
            full, tail = divmod(len(r.tokens), bs)
            src += [r.twin.blocks[full] * bs + i for i in range(tail)]
            dst += [r.blocks[full] * bs + i for i in range(tail)]
        if not src:
            return
        src_t, dst_t = (torch.tensor(x, device=self.pool.device) for x in (src, dst))
        for k, v in zip(self.pool.k, self.pool.v):
            k.index_copy_(1, dst_t, k.index_select(1, src_t))
            v.index_copy_(1, dst_t, v.index_select(1, src_t))

    def _spliced(self, ids: torch.Tensor, reqs: list[Request], counts: list[int]) -> torch.Tensor:
        """Token embeddings of the packed row (1, T, dim), each request's given prompt embeddings
        written over its prompt tokens (a request recomputed after preemption also has generated
        tokens, which keep their token embeddings)."""
        h = self.model.tok_embeddings(ids)
        start = 0
        for r, c in zip(reqs, counts):
            if r.embeds is not None and r.cached < len(r.prompt):
                n = min(c, len(r.prompt) - r.cached)
                h[0, start:start + n] = r.embeds[r.cached:r.cached + n]
            start += c
        return h

    def _decode(self, reqs: list[Request]) -> list[Event]:
        reqs = self._make_room(reqs)
        if not reqs:
            return []
        dev = self.pool.device
        ids = torch.tensor([[r.output[-1]] for r in reqs], device=dev)
        members = [r.id for r in reqs]
        if self._batch is None or self._batch_members != members:
            # The running set changed: a new working copy of its keys and values (one gather).
            self._flush()
            capacity = max(len(r.prompt) + r.params.max_new_tokens for r in reqs)
            shifts = [r.shift for r in reqs] if any(r.positions is not None for r in reqs) else None
            self._batch = DecodeBatch(self.pool, [r.blocks for r in reqs], [r.cached for r in reqs], capacity, shifts)
            self._batch_members = members
        batch = self._batch
        batch.tables = [r.blocks for r in reqs]  # the same lists, grown by _make_room
        if self._check_weights:
            prepare_kernels(self.model, self._kernel_batch)
            self._check_weights = False
        with kernels_enabled():
            logits = self.model.logits(self.model.forward_hidden(ids, kv_cache=batch)[:, 0])
        for r in reqs:
            r.cached += 1
        return self._sampled(reqs, logits)

    def _make_room(self, reqs: list[Request]) -> list[Request]:
        """A slot for each request's next token: a new block where its last one is full. With none
        left, the most recently admitted request goes back to the queue (its blocks freed)."""
        blocks, bs = self.pool.blocks, self.pool.block_size
        ready = []
        for req in reqs:
            while req in self.running and req.cached // bs >= len(req.blocks):
                try:
                    req.blocks.append(blocks.allocate())
                except OutOfBlocks:
                    self._preempt(self.running[-1])
            if req in self.running:
                ready.append(req)
        return [r for r in ready if r in self.running]  # a later request may have preempted an earlier one

    def _flush(self) -> None:
        """The running batch's decoded keys and values into the pool, before anything reads it."""
        if self._batch is not None:
            self._batch.flush()

    def _leave_batch(self, req: Request) -> None:
        """A member leaves the running set: its working copy is written back and dropped (a later
        request may reuse the id, and must not find the old copy)."""
        self._flush()
        if req.id in self._batch_members:
            self._batch, self._batch_members = None, []

    def _preempt(self, req: Request) -> None:
        self._leave_batch(req)
        self.pool.blocks.release(req.blocks)
        req.blocks, req.cached, req.registered, req.hashes = [], 0, 0, []
        self.running.remove(req)
        self.waiting.appendleft(req)
        self.stats.preemptions += 1

    def _sampled(self, reqs: list[Request], logits: torch.Tensor) -> list[Event]:
        seen = [torch.tensor(r.tokens, device=logits.device) if r.params.repetition_penalty != 1.0 else None
                for r in reqs]
        constrained = [j for j, r in enumerate(reqs) if r.matcher is not None]
        if constrained:  # tokens that would leave the JSON grammar get -inf before sampling
            logits = logits.clone()
            for j in constrained:
                allowed = reqs[j].matcher.mask().to(logits.device)
                if allowed.any():
                    logits[j].masked_fill_(~allowed, float("-inf"))
        choices = sample_rows(logits, [r.params for r in reqs], [r.generator for r in reqs], seen)
        events = []
        now = time.perf_counter()
        for req, choice in zip(reqs, choices):
            self._register_full_blocks(req)
            tok = choice.token_id
            if req.first_token_at is None:
                req.first_token_at = now
            if tok in req.params.stop_token_ids:
                events.append(Event(req.id, None, req.text.flush(), "stop", choice))
                self._finish(req, "stop")
                continue
            req.output.append(tok)
            self.stats.generated_tokens += 1
            text, hit_stop = req.text.push(tok)
            if req.matcher is not None:
                # (a token outside the grammar can come only from an empty mask, which a byte-level
                # vocabulary never gives: the reply ends there rather than go on outside it)
                inside = req.matcher.advance(tok)
                if not inside:
                    log.warning("request %s: token %d leaves its JSON grammar; the reply ends there", req.id, tok)
                if not inside or req.matcher.finished:  # the JSON value is whole
                    events.append(Event(req.id, tok, text + req.text.flush(), "stop", choice))
                    self._finish(req, "stop")
                    continue
            if hit_stop:
                events.append(Event(req.id, tok, text, "stop", choice))
                self._finish(req, "stop")
            elif len(req.output) >= req.params.max_new_tokens:
                events.append(Event(req.id, tok, text + req.text.flush(), "length", choice))
                self._finish(req, "length")
            else:
                events.append(Event(req.id, tok, text, None, choice))
        return events

    def _register_full_blocks(self, req: Request) -> None:
        """Offer the request's newly filled blocks to the prefix cache (prompt and output alike)."""
        bs, full = self.pool.block_size, req.cached // self.pool.block_size
        if req.private:
            return
        if full > len(req.hashes):
            req.hashes = block_hashes(req.tokens[:full * bs], bs)
        for i in range(req.registered // bs, full):
            self.pool.blocks.register(req.blocks[i], req.hashes[i])
        req.registered = full * bs

    def _finish(self, req: Request, reason: str) -> None:
        self._leave_batch(req)
        req.finish_reason = reason
        if req in self.running:
            self.running.remove(req)
        elif req in self.waiting:
            self.waiting.remove(req)
        self.pool.blocks.release(req.blocks)
        req.blocks = []
        del self.requests[req.id]
        self.stats.finished += 1
