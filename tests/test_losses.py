"""H_alpha (§5, eq. 3) equals the average cross-entropy over the noisy-label distribution."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from loaders.noise import NoiseModel, NoiseSpec, uniform_distribution
from study import losses
from study.trial import Trial
from tests.conftest import trial_config

M = 10


def test_h_alpha_matches_equation_3() -> None:
    torch.manual_seed(0)
    logits, y, alpha = torch.randn(64, M), torch.randint(0, M, (64,)), 7.0
    log_p = logits.log_softmax(1)
    eq3 = (-log_p.gather(1, y[:, None]).mean() / (1 + alpha)
           - alpha / (M * (1 + alpha)) * log_p.sum(1).mean())
    to_target = losses.targets("h_alpha", alpha, torch.from_numpy(uniform_distribution(M))[None])
    loss = losses.loss(logits, to_target(y[None])[0])
    torch.testing.assert_close(loss, eq3.float())


def test_h_alpha_gradient_is_mean_noisy_cross_entropy_gradient() -> None:
    """Numerically, against many labels sampled by the real noise model at the same alpha."""
    torch.manual_seed(1)
    alpha, n, copies = 4.0, 8, 20_000  # 20,000 / 100 noise seeds x (1 + alpha) labels per example
    clean = torch.randint(0, M, (n,))
    logits = torch.randn(n, M, requires_grad=True)
    to_target = losses.targets("h_alpha", alpha, torch.from_numpy(uniform_distribution(M))[None])
    losses.loss(logits, to_target(clean[None])[0]).backward()
    exact = logits.grad.clone()

    # Sample the training labels of each example: copy 0 clean, alpha copies noisy, many times over.
    per_set = NoiseModel(NoiseSpec(alpha=alpha), clean, M).n_virtual
    sources, labels = [], []
    for seed in range(copies // 100):  # fresh noisy labels: vary the noise seed
        s, lab = NoiseModel(NoiseSpec(alpha=alpha, seed=seed), clean, M)(torch.arange(per_set))
        sources.append(s), labels.append(lab)
    source, label = torch.cat(sources), torch.cat(labels)
    logits.grad = None
    # Mean over each example's own labels = expectation over its label distribution.
    F.cross_entropy(logits[source], label, reduction="none").mean().backward()
    sampled = logits.grad
    torch.testing.assert_close(sampled, exact, atol=4e-3, rtol=0.05)


def test_h_alpha_trial_trains_on_clean_examples_only(data_root: Path) -> None:
    trial = Trial(trial_config(data_root, noise={"alpha": 20.0}, train={"loss": "h_alpha", "epochs": 3},
                               model={"arch": "mlp1"}, data={"n_clean": 1000}))
    assert trial.noise.n_virtual == 1000  # the noise lives in the loss
    reports = []
    trial.run(lambda rs: reports.append(rs[0]))
    assert reports[-1].test_acc > 0.5, reports
