"""The value function V(s_t) of PPO and TRPO: a linear head on the policy's hidden states, a separate
model with its own adapter, or none (V = 0: REINFORCE-style returns, whitened into a batch baseline)."""

from __future__ import annotations

import torch
from torch import nn

from reasoning_rl import models
from reasoning_rl.algorithms.batch import Batch, response_forward
from reasoning_rl.errors import ConfigError


class Critic(nn.Module):
    """V(s_t) for every response position.

    head: a linear head reading the policy's last hidden states, detached, so only the policy
    objective moves the policy (TRPO's trust region covers the policy alone); cheap, no second model.
    separate: its own copy of the base model with its own LoRA adapter (peft=none: a fully trained
    copy), plus the linear head; stronger, at the memory and compute of a second model.
    none: no parameters, V = 0 everywhere: GAE's advantages are then the discounted returns, and
    whitening subtracts their batch mean (REINFORCE with a baseline; RLOO-like with γ = λ = 1).
    """

    def __init__(self, kind: str, policy, model_cfg=None, peft_cfg=None):
        super().__init__()
        self.kind = kind
        self.trunk = self.head = None
        if kind == "none":
            return
        if kind == "separate":
            self.trunk = models.apply_peft(models.load_model(model_cfg), peft_cfg).eval()
        hidden_size = (self.trunk or policy).config.get_text_config().hidden_size
        self.head = nn.Linear(hidden_size, 1).to(policy.device)
        # Zero init: V = 0 before any training, and no noise in the first advantages.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def reads_policy_hidden(self) -> bool:
        return self.kind == "head"

    @property
    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def values(self, batch: Batch, policy_hidden: torch.Tensor | None) -> torch.Tensor:
        if self.head is None:
            return torch.zeros_like(batch.response_mask)
        if self.trunk is None:
            hidden = policy_hidden.detach()
        else:
            _, hidden = response_forward(self.trunk, batch, 1.0, hidden=True, logits=False)
        return self.head(hidden).squeeze(-1) * batch.response_mask

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().contiguous() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.trainable_state()) - set(state)
        if missing:
            raise ConfigError(f"checkpoint lacks critic weights {sorted(missing)[0]} (critic={self.kind})")
        self.load_state_dict(state, strict=False)
