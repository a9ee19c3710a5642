"""Batched sampling with `transformers.generate`: works anywhere, including CPU-only machines."""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig

from reasoning_rl.generation.base import Completion, SamplingParams


class HFBackend:
    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.last_stats: dict = {}
        # Chat models end a turn with a token (e.g. <|im_end|>) that may differ from the tokenizer's EOS.
        eos = model.generation_config.eos_token_id
        self.eos_ids = {tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}

    def generate(self, prompts: list[str], params: SamplingParams, *, progress: bool = True) -> list[list[Completion]]:
        lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        # Similar lengths share a batch (less padding); longest first so running out of memory shows up at once.
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        sequences = [i for i in order for _ in range(params.n)]
        results: list[list[Completion]] = [[] for _ in prompts]
        config = self._generation_config(params)
        was_training = self.model.training
        self.model.eval()  # no dropout while sampling, even when called from inside a training loop
        cuda = [self.model.device] if self.model.device.type == "cuda" else []
        start = time.perf_counter()
        try:
            # fork_rng: the per-batch reseeding below must not reset the caller's (e.g. a trainer's) RNG state.
            with torch.random.fork_rng(devices=cuda), torch.inference_mode(), tqdm(
                total=len(sequences), desc="generate", unit="seq", disable=not progress
            ) as bar:
                for batch_index, lo in enumerate(range(0, len(sequences), params.batch_size)):
                    batch = sequences[lo : lo + params.batch_size]
                    # Reseed per batch so a batch's samples don't depend on what ran before it.
                    torch.manual_seed(params.seed + batch_index)
                    for i, completion in zip(batch, self._generate_batch([prompts[i] for i in batch], config, params)):
                        results[i].append(completion)
                    bar.update(len(batch))
        finally:
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

    def _generation_config(self, params: SamplingParams) -> GenerationConfig:
        sample = params.temperature > 0
        # Every knob is set explicitly: generate() fills unset ones from the model's own generation_config,
        # and hub defaults (e.g. Qwen's repetition_penalty=1.05, top_k=20) would silently change the sampler.
        # Greedy ignores the sampling knobs; transformers' neutral values keep its config validation quiet.
        return GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=sample,
            temperature=params.temperature if sample else 1.0,
            top_p=params.top_p if sample else 1.0,
            top_k=params.top_k if sample else 50,
            repetition_penalty=1.0,
            num_beams=1,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(params.stop_strings) or None,
        )

    def _generate_batch(self, texts: list[str], config: GenerationConfig, params: SamplingParams) -> list[Completion]:
        # Prompts are already chat-templated, so the template's own special tokens are the only ones wanted.
        inputs = self.tokenizer(
            texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
        ).to(self.model.device)
        extra = {"tokenizer": self.tokenizer} if params.stop_strings else {}
        output = self.model.generate(**inputs, generation_config=config, **extra)
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        return [self._completion(ids, params) for ids in new_tokens]

    def _completion(self, ids: list[int], params: SamplingParams) -> Completion:
        eos_at = next((k for k, token in enumerate(ids) if token in self.eos_ids), None)
        body = ids if eos_at is None else ids[:eos_at]
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        cuts = [k for k in (text.find(s) for s in params.stop_strings) if k >= 0]
        if cuts:
            # generate() halted on the stop string and padded the rest of the row (pad may equal EOS).
            while body and body[-1] == self.tokenizer.pad_token_id:
                body = body[:-1]
            return Completion(text[: min(cuts)], len(body), "stop")
        if eos_at is not None:
            return Completion(text, eos_at + 1, "stop")
        return Completion(text, len(ids), "length")
