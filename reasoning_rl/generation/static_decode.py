"""A fixed-shape decode for the HF backend (`generation.decode=static|compiled`): the GPU fast path.

A CUDA graph replays a recorded step only with the shapes and memory addresses it was recorded with, so
every step here has the same shapes:
- the batch is a bucket, a power of two; rows that finish stay in it, computing tokens nobody reads,
  until at most half of it is live, and then the live rows move to the next smaller bucket;
- the KV cache is transformers' StaticCache, of a fixed capacity, attended over its whole length
  (later positions are masked by causality, left padding by the attention mask);
- the cache of each bucket size is kept by the decoder and reused by the next decode, so with
  `compiled` a graph recorded once (`torch.compile`, mode reduce-overhead on a GPU) is replayed by
  every later decode.
The host reads the batch's state every `sync_every` steps, not every step, so that on a GPU it queues
the next steps while the device runs.

Tokens are chosen from the same logits by the same warpers as the dynamic decode (generation/hf.py): greedy
decoding gives the same tokens; sampled decoding draws one uniform per bucket row, so its completions have
the same distribution but not the same draws. On CPU this path does not pay (docs/benchmarks.md: the
compiled step is 0.53x our dynamic one), so `dynamic` stays the default.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from transformers import StaticCache
from transformers.cache_utils import StaticLayer

from reasoning_rl.generation.kv_cache import decode_cache

MIN_BUCKET = 8  # a smaller bucket would save little compute and cost one more compiled graph
CAPACITY_STEP = 256  # capacities are rounded up to this, so that nearby lengths share a cache and a graph


def bucket_for(rows: int) -> int:
    return max(MIN_BUCKET, 1 << (rows - 1).bit_length())


def supports_static(config) -> bool:
    """Every layer full attention: the prefill's keys can then be copied into the static layers as they are."""
    cache = StaticCache(config=config, max_cache_len=1)
    return all(type(layer) is StaticLayer for layer in cache.layers)


# One decoder per model and mode, whichever backend asks: an evaluation builds a backend each time, and a new
# decoder would allocate new caches and record new graphs.
_DECODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def decoder_for(model, cache_arg: str, *, compiled: bool) -> StaticDecoder:
    per_model = _DECODERS.setdefault(model, {})
    if compiled not in per_model:
        per_model[compiled] = StaticDecoder(model, cache_arg, compiled=compiled)
    return per_model[compiled]


class StaticDecoder:
    """The decode loop of `HFBackend` with fixed shapes; `compiled` runs each step through torch.compile."""

    def __init__(self, model, cache_arg: str, *, compiled: bool):
        self._model = weakref.ref(model)  # a strong one would keep the model alive as its own _DECODERS key
        self.cache_arg = cache_arg
        self.compiled = compiled
        self.cuda = model.device.type == "cuda"
        self.sync_every = 8 if self.cuda else 1  # a CPU step is synchronous anyway: check at every one
        self.capacity = 0
        self._caches: dict[int, StaticCache] = {}  # by bucket size, all of `capacity` positions
        self._step: Callable = self._forward
        self.last_buckets: list[int] = []  # the bucket sizes the last decode went through, largest first
        if compiled:
            # The host-side cost of a step is what CUDA graphs remove; on CPU, inductor's kernels.
            mode = "reduce-overhead" if self.cuda else None
            # Dynamo keeps 8 compiled versions per function by default, then runs it uncompiled: one per bucket
            # size (6 from 256 rows down), per capacity and per model would pass that.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            self._step = torch.compile(self._forward, mode=mode, dynamic=False)

    @property
    def model(self):
        return self._model()

    def _forward(self, input_ids, attention_mask, position_ids, cache):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=True, **{self.cache_arg: cache}).logits[:, -1]

    def reserve(self, positions: int) -> None:
        """Make the caches hold at least `positions` per row (a longer prompt + cap than any before)."""
        needed = -(-positions // CAPACITY_STEP) * CAPACITY_STEP
        if needed > self.capacity:
            self.capacity, self._caches = needed, {}  # new shapes: the graphs of the old ones are not replayed

    def _cache(self, bucket: int, like: torch.Tensor) -> StaticCache:
        cache = self._caches.get(bucket)
        kept = cache.layers[0].keys if cache is not None else None
        if kept is None or kept.dtype != like.dtype or kept.device != like.device:
            cache = StaticCache(config=self.model.config, max_cache_len=self.capacity)
            heads, dim = like.shape[1], like.shape[-1]
            cache.early_initialization(bucket, heads, dim, like.dtype, like.device)
            self._caches[bucket] = cache
        return cache

    def _load(self, bucket: int, keys: list[torch.Tensor], values: list[torch.Tensor], filled: int) -> StaticCache:
        """The bucket's cache with `keys`/`values` ([bucket, heads, filled, dim] per layer) as its first positions."""
        cache = self._cache(bucket, keys[0])
        for layer, k, v in zip(cache.layers, keys, values):
            layer.keys[:, :, :filled].copy_(k)
            layer.values[:, :, :filled].copy_(v)
            layer.cumulative_length.fill_(filled)
        return cache

    def step(self, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
        if self.compiled and self.cuda:
            torch.compiler.cudagraph_mark_step_begin()
        # A replayed graph writes its output into the same buffer each time: the logits are copied out.
        return self._step(tokens[:, None], mask, positions, cache).float().clone()

    def decode(self, input_ids, prompt_mask, positions, source: list[int], caps: list[int],
               choose: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor], eos: torch.Tensor,
               stop) -> list[tuple[list[int], bool]]:
        """Generated ids of each row and whether it ended on EOS / a stop string. `input_ids`, `prompt_mask` and
        `positions`: the distinct prompts, left-padded; `source[r]`: row r's prompt; `choose(logits, generated,
        step)`: the next tokens; `stop`: a StopStringCriteria or None."""
        device = input_ids.device
        rows, width, steps = len(source), input_ids.shape[1], max(caps)
        self.reserve(width + steps)
        prefill = decode_cache(self.model.config, width)
        logits = self.model(input_ids=input_ids, attention_mask=prompt_mask, position_ids=positions, use_cache=True,
                            logits_to_keep=1, **{self.cache_arg: prefill}).logits[:, -1].float()

        bucket = bucket_for(rows)
        self.last_buckets = [bucket]
        index = torch.tensor(source + [source[0]] * (bucket - rows), device=device)  # padding rows: copies of row 0
        layers = prefill.layers
        cache = self._load(bucket, [la.keys[index] for la in layers], [la.values[index] for la in layers], width)
        logits, positions = logits[index], positions[index][:, -1:] + 1
        mask = torch.ones((bucket, self.capacity), dtype=prompt_mask.dtype, device=device)
        mask[:, :width] = prompt_mask[index]
        del prefill, layers

        active: list[int | None] = list(range(rows)) + [None] * (bucket - rows)  # original row of each bucket row
        cap = torch.tensor(caps + [1] * (bucket - rows), device=device)
        finished = torch.arange(bucket, device=device) >= rows
        length = torch.zeros(bucket, dtype=torch.long, device=device)  # tokens when the row finished
        ended = torch.zeros(bucket, dtype=torch.bool, device=device)  # on EOS / a stop string, not its cap
        generated = torch.zeros((bucket, steps), dtype=torch.long, device=device)
        out: list[tuple[list[int], bool]] = [([], False)] * rows

        def collect(which: list[int]) -> None:
            ids, lengths, hit = generated[which].tolist(), length[which].tolist(), ended[which].tolist()
            for k, row_ids, n, e in zip(which, ids, lengths, hit):
                if active[k] is not None:
                    out[active[k]] = (row_ids[:n], e)

        for step in range(steps):
            tokens = choose(logits, generated, step)
            generated[:, step] = tokens
            done = torch.isin(tokens, eos)
            if stop is not None:
                done |= stop(generated[:, : step + 1], None)
            new = (done | (cap <= step + 1)) & ~finished
            length = torch.where(new, step + 1, length)
            ended |= new & done
            finished |= new
            if step + 1 == steps:
                break
            if (step + 1) % self.sync_every == 0:
                live = int((~finished).sum())
                if live == 0:
                    break
                if live <= bucket // 2 and bucket > MIN_BUCKET:
                    keep = (~finished).nonzero().squeeze(1).tolist()
                    collect(finished.nonzero().squeeze(1).tolist())
                    bucket = bucket_for(live)
                    self.last_buckets.append(bucket)
                    pick = keep + [keep[0]] * (bucket - live)
                    index = torch.tensor(pick, device=device)
                    filled = width + step  # positions in the cache: the prompt and the tokens fed so far
                    cache = self._load(bucket, [la.keys[index, :, :filled] for la in cache.layers],
                                       [la.values[index, :, :filled] for la in cache.layers], filled)
                    active = [active[k] for k in keep] + [None] * (bucket - live)
                    tokens, mask, positions, cap = tokens[index], mask[index], positions[index], cap[index]
                    generated, length, ended = generated[index], length[index], ended[index]
                    finished = torch.arange(bucket, device=device) >= live
            logits = self.step(tokens, mask, positions, cache)
            positions = positions + 1
        collect(list(range(bucket)))
        return out
