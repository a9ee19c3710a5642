"""Rollout sequences as tensors: [left-padded prompt | right-padded response], so every response starts
at the same column, and the forward pass that scores only the response positions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Token sequences [prompt | response]; per-token tensors cover the R response positions."""

    input_ids: torch.Tensor  # (B, P + R)
    attention_mask: torch.Tensor  # (B, P + R)
    response_mask: torch.Tensor  # (B, R) float: 1 on real response tokens
    action_mask: torch.Tensor  # (B, R) float: 1 on tokens the policy sampled (not inserted by budget forcing)
    prompt_length: int  # P
    # Filled by the rollout:
    old_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    hidden: torch.Tensor | None = None  # (B, R, H) policy hidden states at rollout (head critic)
    # False when every sequence of the step (all processes) scored the same and there is no KL term: then
    # every return is equal, the true advantages are all 0, and the policy must not move.
    has_signal: bool = True

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_length :]

    @property
    def position_ids(self) -> torch.Tensor:
        # As generate() numbers them under left padding, so log-probs match the sampler's.
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index) -> Batch:
        """The sequences at `index` (a slice or index tensor): a minibatch."""
        pick = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return Batch(**{k: v[index] if isinstance(v, torch.Tensor) else v for k, v in pick.items()})

    def chunks(self, size: int):
        for lo in range(0, len(self), size):
            yield self.select(slice(lo, lo + size))


def make_batch(prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int, device,
               injected: list[list[tuple[int, int]]] | None = None) -> Batch:
    """`injected`: per response, [start, end) spans of tokens that were inserted, not sampled (budget
    forcing's wait text): part of the state, but not actions, so no policy loss or KL penalty on them."""
    prompt_length = max(map(len, prompt_ids))
    response_length = max(map(len, response_ids))
    ids, attention, response_mask, action_mask = [], [], [], []
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids, strict=True)):
        left, right = prompt_length - len(p), response_length - len(r)
        ids.append([pad_id] * left + p + r + [pad_id] * right)
        attention.append([0] * left + [1] * (len(p) + len(r)) + [0] * right)
        response_mask.append([1.0] * len(r) + [0.0] * right)
        actions = list(response_mask[-1])
        for start, end in (injected[i] if injected else []):
            actions[start:end] = [0.0] * len(actions[start:end])
        action_mask.append(actions)
    return Batch(
        input_ids=torch.tensor(ids, device=device),
        attention_mask=torch.tensor(attention, device=device),
        response_mask=torch.tensor(response_mask, device=device),
        action_mask=torch.tensor(action_mask, device=device),
        prompt_length=prompt_length,
    )


def response_forward(model, batch: Batch, temperature: float, *, hidden: bool = False, logits: bool = True):
    """(logits of the response positions / temperature, last hidden states there or None).

    Position P−1+t predicts response token t; only those R logits are computed (logits_to_keep).
    """
    response_length = batch.response_ids.shape[1]
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=response_length + 1 if logits else 1,
        output_hidden_states=hidden,
        use_cache=False,
    )
    scaled = out.logits[:, :-1].float() / temperature if logits else None
    states = None
    if hidden:
        p = batch.prompt_length
        states = out.hidden_states[-1][:, p - 1 : p + response_length - 1].float()
    return scaled, states
