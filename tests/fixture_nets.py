"""Small nn.Module classes for the ``module:Class`` tests (imported as ``tests.fixture_nets``)."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """A vector/image network with an ``embed`` layer: (n, *in_shape) -> (n, 10) logits; embed (n, dim)."""

    def __init__(self, in_features: int = 64, dim: int = 6, n_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 32), nn.ReLU())
        self.embed = nn.Linear(32, dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, *in_shape) -> (n, n_classes)."""
        return self.head(torch.relu(self.embed(self.body(x))))


class NoArgs(nn.Module):
    """Built with no arguments: (n, 1, 8, 8) -> (n, 12) from a ``proj`` layer."""

    def __init__(self):
        super().__init__()
        self.flat = nn.Flatten()
        self.proj = nn.Linear(64, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 1, 8, 8) -> (n, 12)."""
        return self.proj(self.flat(x))


NOT_A_MODULE = 42


def not_a_class() -> int:
    """A function, not a class."""
    return 1
