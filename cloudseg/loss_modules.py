"""Loss modules smp does not have: a weighted sum of loss terms (the mixed focal loss)."""

from __future__ import annotations

import torch
from torch import nn


class WeightedSum(nn.Module):
    """Σ weight·term(logits, target): e.g. 0.5·focal + 0.5·dice."""

    def __init__(self, terms: dict[str, tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.weights = {name: float(w) for name, (w, _) in terms.items()}
        self.terms = nn.ModuleDict({name: term for name, (_, term) in terms.items()})

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted sum of the terms; a zero weight skips its term."""
        total = logits.new_zeros(())
        for name, term in self.terms.items():
            if self.weights[name]:
                total = total + self.weights[name] * term(logits, target)
        return total

    def extra_repr(self) -> str:
        """The weights, shown by `print(module)`."""
        return ", ".join(f"{n}={w}" for n, w in self.weights.items())
