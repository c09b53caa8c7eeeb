"""Losses: cross-entropy, and the paper's infinite-batch noisy loss H_alpha (§5, eq. 3).

H_alpha is the expected cross-entropy over the noisy-label distribution of each clean example:
with probability 1/(1+alpha) the clean label, otherwise a label from the noise distribution D of
its class. For uniform noise (D = 1/m) this is eq. 3,
    H_alpha = -1/(1+alpha) <log y_f0> - alpha/(m(1+alpha)) sum_k <log y_k>.
Training on the clean examples with it simulates alpha*n noisy labels at infinite batch size.

Both are one cross-entropy against a per-member target: the label itself (ce), or the whole label
distribution of the clean label (h_alpha, a soft target), so a fused group computes either the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSSES = ("ce", "h_alpha")
Targets = Callable[[torch.Tensor], torch.Tensor]


def label_distribution(noise_dist: torch.Tensor, alpha: float) -> torch.Tensor:
    """(..., m, m): row c is the distribution of the training label of an example of class c."""
    m = noise_dist.shape[-1]
    return (torch.eye(m, dtype=noise_dist.dtype, device=noise_dist.device) + alpha * noise_dist) / (1 + alpha)


def targets(name: str, alpha: float, noise_dists: torch.Tensor) -> Targets:
    """labels (K, B) of K members -> their training targets: (K, B) labels (ce) or (K, B, m) soft targets
    (h_alpha, from each member's (m, m) noise distribution in noise_dists (K, m, m))."""
    if name == "ce":
        return lambda labels: labels
    table = label_distribution(noise_dists.float(), alpha)
    members = torch.arange(table.shape[0], device=table.device)[:, None]
    return lambda labels: table[members, labels]


def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One member's mean cross-entropy against its targets (labels or soft), in fp32 under autocast."""
    return F.cross_entropy(logits.float(), target)
