"""Losses: cross-entropy, and the paper's infinite-batch noisy loss H_alpha (§5, eq. 3).

H_alpha is the expected cross-entropy over the noisy-label distribution of each clean example:
with probability 1/(1+alpha) the clean label, otherwise a label from the noise distribution D of
its class. For uniform noise (D = 1/m) this is eq. 3,
    H_alpha = -1/(1+alpha) <log y_f0> - alpha/(m(1+alpha)) sum_k <log y_k>.
Training on the clean examples with it simulates alpha*n noisy labels at infinite batch size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSSES = ("ce", "h_alpha")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def label_distribution(noise_dist: torch.Tensor, alpha: float) -> torch.Tensor:
    """(m, m): row c is the distribution of the training label of an example of class c."""
    m = noise_dist.shape[0]
    return (torch.eye(m, dtype=noise_dist.dtype, device=noise_dist.device) + alpha * noise_dist) / (1 + alpha)


def h_alpha(logits: torch.Tensor, clean_labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against each clean label's whole noisy-label distribution (a soft target)."""
    return F.cross_entropy(logits.float(), targets[clean_labels])


def build(name: str, alpha: float, noise_dist: torch.Tensor) -> LossFn:
    if name == "ce":
        return F.cross_entropy
    return functools.partial(h_alpha, targets=label_distribution(noise_dist.float(), alpha))
