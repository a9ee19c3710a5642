"""Batched sampling with the Hugging Face model itself: works anywhere, including CPU-only machines.

A short decode loop over the model and its KV cache instead of `model.generate`: when a sequence
ends (EOS or a stop string) its row leaves the batch and its cache, so the remaining steps cost only
what is still running. `generate()` keeps every finished row in the batch until the longest one ends;
with N samples of mixed length that is much of the work (see docs/generation.md for the numbers).
The temperature / top-k / top-p warpers are transformers' own; the draw from their distribution is an
inverse-CDF lookup (`sample_from_probs`), 4x cheaper than `torch.multinomial` over a 49k vocabulary on CPU.
The KV cache, the attention mask and the stop-string buffer are allocated once per decode (kv_cache.py).
"""

from __future__ import annotations

import inspect
import time
import warnings

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList, StopStringCriteria
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from reasoning_rl.generation.base import DECODES, Completion, SamplingParams, TokenBackend, eos_id_set
from reasoning_rl.generation.kv_cache import decode_cache
from reasoning_rl.generation.static_decode import StaticDecoder, decoder_for, supports_static


def sample_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """One token per row of `probs` ([batch, vocab], rows summing to 1), drawn by inverse CDF: the first
    token whose cumulative probability exceeds a uniform draw. The same distribution as
    `torch.multinomial(probs, 1)` (tests/test_generation.py checks it with a chi-square test), for one
    cumsum and a binary search instead of multinomial's slower CPU kernel."""
    cdf = probs.cumsum(dim=-1)
    u = torch.rand((probs.shape[0], 1), device=probs.device, dtype=cdf.dtype) * cdf[:, -1:]
    tokens = torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=probs.shape[1] - 1)
    # u rounding up to the total (about 1 in 2^24 draws) would pick the last token whatever its probability.
    zero = probs.gather(1, tokens[:, None]).squeeze(1) == 0
    if zero.any():
        tokens[zero] = probs[zero].argmax(dim=-1)
    return tokens


def _merge_lora(model) -> list | None:
    """On CPU, fold a LoRA adapter into the base weights while sampling: each Linear is then one matmul
    instead of three plus a dropout, which at decode batch sizes is most of a step's cost there.
    Returns the base weights as they were, for `_unmerge_lora` to put back bit for bit (subtracting the
    delta again would leave rounding error in the reference model); None when nothing was merged."""
    from peft.tuners.lora import LoraLayer

    if model.device.type != "cpu" or not hasattr(model, "merge_adapter"):
        return None
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    if not layers or any(m.merged or m.disable_adapters for m in layers):
        return None  # already merged, or sampling the reference inside disable_adapter()
    saved = [(m.get_base_layer().weight, m.get_base_layer().weight.detach().clone()) for m in layers]
    model.merge_adapter()
    return saved


def _unmerge_lora(model, saved: list) -> None:
    model.unmerge_adapter()  # resets peft's merged flags
    with torch.no_grad():
        for weight, original in saved:
            weight.copy_(original)


class HFBackend(TokenBackend):
    """`decode`: "dynamic" (rows leave the batch and the cache as they finish), or the fixed-shape decode of
    static_decode.py, "static" (eager) or "compiled" (torch.compile; CUDA graphs on a GPU)."""

    def __init__(self, model, tokenizer, *, decode: str = "dynamic"):
        if decode not in DECODES:
            raise ValueError(f"decode={decode!r} is not one of {list(DECODES)}")
        self.model = model
        self.tokenizer = tokenizer
        self.last_stats: dict = {}
        self.eos_ids = eos_id_set(tokenizer.eos_token_id, model.generation_config.eos_token_id)
        self._stop_criteria: dict[tuple[str, ...], StopStringCriteria] = {}  # built once per stop-string set
        # transformers renamed forward's `past_key_values` to `cache` (5.2x; the old name warns, then goes in 5.40).
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._cache_arg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self._static: StaticDecoder | None = None
        if decode != "dynamic":
            if not supports_static(model.config):
                warnings.warn(f"generation.decode={decode}: {type(base).__name__} has layers that are not full "
                              "attention (a sliding window); decoding with the dynamic cache", stacklevel=2)
            else:
                self._static = decoder_for(model, self._cache_arg, compiled=decode == "compiled")

    def encode(self, prompts: list[str]) -> list[list[int]]:
        # Prompts are already chat-templated, so the template's own special tokens are the only ones wanted.
        return self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]

    def generate_ids(
        self, prompt_ids: list[list[int]], params: SamplingParams, *, progress: bool | str = True,
        limits: list[int] | None = None,
    ) -> list[list[Completion]]:
        """`params.n` completions for each tokenized prompt, in prompt order; `limits`: a max_new_tokens per
        prompt (at most params.max_new_tokens), for callers such as budget forcing that continue sequences."""
        caps = limits or [params.max_new_tokens] * len(prompt_ids)
        # Similar lengths share a batch (less padding); longest first so running out of memory shows up at once.
        order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
        sequences = [i for i in order for _ in range(params.n)]
        results: list[list[Completion]] = [[] for _ in prompt_ids]
        if self._static is not None and prompt_ids:  # one capacity for every batch: one cache and graph per bucket
            self._static.reserve(max(map(len, prompt_ids)) + max(caps))
        was_training = self.model.training
        self.model.eval()  # no dropout while sampling, even when called from inside a training loop
        cuda = [self.model.device] if self.model.device.type == "cuda" else []
        start = time.perf_counter()
        merged = _merge_lora(self.model)
        try:
            # fork_rng: the per-batch reseeding below must not reset the caller's (e.g. a trainer's) RNG state.
            with torch.random.fork_rng(devices=cuda), torch.inference_mode(), tqdm(
                total=len(sequences), unit="seq", disable=not progress,
                desc=progress if isinstance(progress, str) else "generate", leave=not isinstance(progress, str),
            ) as bar:
                for batch_index, lo in enumerate(range(0, len(sequences), params.batch_size)):
                    batch = sequences[lo : lo + params.batch_size]
                    # Reseed per batch so a batch's samples don't depend on what ran before it.
                    torch.manual_seed(params.seed + batch_index)
                    decoded = self._decode([prompt_ids[i] for i in batch], [caps[i] for i in batch], params)
                    for i, (ids, hit_stop) in zip(batch, decoded):
                        results[i].append(self._completion(ids, hit_stop, params))
                    bar.update(len(batch))
        finally:
            if merged is not None:
                _unmerge_lora(self.model, merged)
            self.model.train(was_training)
        seconds = time.perf_counter() - start
        tokens = sum(c.num_tokens for per_prompt in results for c in per_prompt)
        self.last_stats = {
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
            "sequences": len(sequences),
        }
        return results

    def _warpers(self, params: SamplingParams) -> LogitsProcessorList:
        # The same warpers, in the same order, as generate(); knobs at their neutral value are left out.
        warpers = LogitsProcessorList()
        if params.temperature <= 0:  # greedy: argmax of the raw logits
            return warpers
        if params.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k > 0:
            warpers.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            warpers.append(TopPLogitsWarper(params.top_p))
        return warpers

    def _stop_criterion(self, stop_strings: list[str]) -> StopStringCriteria | None:
        key = tuple(stop_strings)
        if key and key not in self._stop_criteria:
            self._stop_criteria[key] = StopStringCriteria(self.tokenizer, list(key))
        return self._stop_criteria.get(key)

    def _decode(self, rows: list[list[int]], caps: list[int], params: SamplingParams) -> list[tuple[list[int], bool]]:
        """Generated ids of each row and whether it ended on EOS / a stop string (else it hit its cap)."""
        device = self.model.device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # The N samples of a prompt share its prefill: each distinct prompt runs once and its KV cache rows
        # are then copied to every sample. With N = 8 and short answers the prefill was most of the work.
        distinct: dict[tuple[int, ...], int] = {}
        source = [distinct.setdefault(tuple(r), len(distinct)) for r in rows]
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in distinct], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in distinct], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        eos = torch.tensor(sorted(self.eos_ids), device=device)
        warpers = self._warpers(params)
        stop = self._stop_criterion(params.stop_strings)

        def choose(logits: torch.Tensor, generated: torch.Tensor, step: int) -> torch.Tensor:
            if params.temperature > 0:
                return sample_from_probs(torch.softmax(warpers(generated[:, :step], logits), dim=-1))
            return torch.argmax(logits, dim=-1)

        if self._static is not None:
            return self._static.decode(input_ids, mask, positions, source, caps, choose, eos, stop)

        out: list[list[int]] = [[] for _ in rows]
        ended = [False] * len(rows)
        active = list(range(len(rows)))  # which original row each batch row is
        remaining = torch.tensor(caps, device=device)  # tokens each live row may still generate
        steps = max(caps)
        # Allocated once: step t uses the first width + t + 1 mask columns and t + 1 generated ones.
        generated = torch.empty((len(rows), steps), dtype=torch.long, device=device)  # for the stop-string check
        cache = decode_cache(self.model.config, width + steps)
        # Prefill: logits of the last position only (the whole prompt's would be prompt x vocab floats).
        logits = self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions,
            use_cache=True, logits_to_keep=1, **{self._cache_arg: cache},
        ).logits[:, -1].float()
        if len(distinct) < len(rows):
            expand = torch.tensor(source, device=device)
            cache.batch_select_indices(expand)
            logits, mask, positions = logits[expand], mask[expand], positions[expand]
        mask = torch.cat([mask, mask.new_ones((len(rows), steps))], dim=1)
        next_position = positions[:, -1:] + 1
        for step in range(steps):
            tokens = choose(logits, generated, step)
            for row, token in zip(active, tokens.tolist()):
                out[row].append(token)
            done = torch.isin(tokens, eos)
            if stop is not None:
                generated[:, step] = tokens
                done |= stop(generated[:, : step + 1], None)
            remaining -= 1
            leaving = done | (remaining <= 0)
            if leaving.any():
                for k in done.nonzero().squeeze(1).tolist():
                    ended[active[k]] = True
                keep = (~leaving).nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
                # The finished rows leave the batch and the KV cache: later steps only pay for live rows.
                cache.batch_select_indices(keep)
                mask, tokens, next_position = mask[keep], tokens[keep], next_position[keep]
                generated, remaining = generated[keep], remaining[keep]
                active = [active[k] for k in keep.tolist()]
            logits = self.model(
                input_ids=tokens[:, None], attention_mask=mask[:, : width + step + 1], position_ids=next_position,
                use_cache=True, **{self._cache_arg: cache},
            ).logits[:, -1].float()
            next_position = next_position + 1
        return list(zip(out, ended))

    def _completion(self, ids: list[int], ended: bool, params: SamplingParams) -> Completion:
        if not ended:
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            return Completion(text, len(ids), "length", token_ids=ids)
        if ids[-1] in self.eos_ids:
            return Completion(self.tokenizer.decode(ids[:-1], skip_special_tokens=True), len(ids), "stop",
                              token_ids=ids)
        # A stop string: its last token is the last one generated; the text ends before the stop string.
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((k for k in (text.find(s) for s in params.stop_strings) if k >= 0), default=len(text))
        return Completion(text[:cut], len(ids), "stop", token_ids=ids)
