"""A KV cache allocated once per decode, for the HF backend's own loop (generation/hf.py).

transformers' DynamicCache appends each step's keys and values with `torch.cat`, which copies the whole
cache of every layer at every step: O(L²) bytes over a decode of L tokens, 12 % of a CPU decode step at
batch 64 (docs/benchmarks.md, the profile). This layer writes each step into a buffer sized for the
prompt plus the longest allowed completion and hands attention a view of the filled part.

Finished rows still leave: `batch_select_indices` copies only the filled part of the kept rows into a
smaller buffer, so later steps cost only what is still running, as before.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values, [batch, heads, capacity, head_dim], of which the first `length` are filled."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        batch, heads, _, dim = key_states.shape
        self._keys = key_states.new_empty((batch, heads, self.capacity, dim))
        self._values = value_states.new_empty((batch, heads, self.capacity, value_states.shape[-1]))
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache full: {end} positions, allocated {self.capacity}")
        self._keys[:, :, self.length:end] = key_states
        self._values[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if not self.is_initialized:
            return
        keys = self._keys.new_empty((len(indices), *self._keys.shape[1:]))
        values = self._values.new_empty((len(indices), *self._values.shape[1:]))
        keys[:, :, : self.length] = self._keys[indices, :, : self.length]
        values[:, :, : self.length] = self._values[indices, :, : self.length]
        self._keys, self._values = keys, values
        self.keys, self.values = keys[:, :, : self.length], values[:, :, : self.length]

    def reset(self) -> None:
        self.length = 0
        super().reset()


def decode_cache(config, capacity: int) -> DynamicCache:
    """A cache for one decode of at most `capacity` positions a row: pre-allocated where every layer is
    full attention, transformers' own DynamicCache otherwise (sliding-window layers keep their own)."""
    cache = DynamicCache(config=config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [PreallocatedLayer(capacity) for _ in cache.layers]
    return cache
