"""H_alpha (§5, eq. 3): it equals the average cross-entropy over the noisy-label distribution; its gradient
against eq. 3's analytic gradient, its soft targets against §3.2's label distribution (uniform and structured), and
a trained H_alpha trial against the entropy floor of its targets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loaders.noise import NoiseModel, NoiseSpec, uniform_distribution
from loaders.noise import uniform_distribution, wrong_class_order
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


def eq3_target(y: torch.Tensor, alpha: float, m: int = M) -> torch.Tensor:
    """By hand: weight 1/(1+alpha) on the clean label plus alpha/(m(1+alpha)) on every class (eq. 3)."""
    q = torch.full((y.numel(), m), alpha / (m * (1 + alpha)), dtype=torch.float64)
    q[torch.arange(y.numel()), y] += 1 / (1 + alpha)
    return q


@pytest.mark.parametrize("alpha", [0.0, 1.0, 4.0, 20.0, 100.0])
def test_h_alpha_gradient_equals_eq3_analytic_gradient(alpha: float) -> None:
    """d H_alpha / d z = (softmax(z) - q) / B exactly (mean over the batch), q the eq. 3 weights."""
    torch.manual_seed(2)
    b = 32
    logits = (3 * torch.randn(b, M)).requires_grad_()
    y = torch.randint(0, M, (b,))
    to_target = losses.targets("h_alpha", alpha, torch.from_numpy(uniform_distribution(M))[None])
    value = losses.loss(logits, to_target(y[None])[0])
    value.backward()
    z = logits.detach().double()
    q = eq3_target(y, alpha)
    analytic = (z.softmax(1) - q) / b
    torch.testing.assert_close(logits.grad.double(), analytic, rtol=1e-5, atol=1e-8)
    expected = -(q * z.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("alpha", [1.0, 20.0])
def test_h_alpha_targets_are_eq3_weights_and_sum_to_one(alpha: float) -> None:
    y = torch.arange(M).repeat(3)
    dists = torch.from_numpy(np.stack([uniform_distribution(M)] * 2))
    target = losses.targets("h_alpha", alpha, dists)(torch.stack([y, y.flip(0)]))  # (K=2, B, m)
    assert target.shape == (2, 3 * M, M)
    torch.testing.assert_close(target[0].double(), eq3_target(y, alpha), rtol=1e-6, atol=0)
    torch.testing.assert_close(target[1].double(), eq3_target(y.flip(0), alpha), rtol=1e-6, atol=0)
    torch.testing.assert_close(target.sum(-1), torch.ones(2, 3 * M))
    assert torch.equal(losses.targets("ce", alpha, dists)(y[None]), y[None])


def entropy(p: np.ndarray) -> float:
    return float(-(p * np.log(p)).sum())


def test_h_alpha_trial_loss_sits_on_the_entropy_floor(data_root: Path) -> None:
    """At alpha = 20 every soft target row has entropy ~2.29 nats: no model gets below it. Plain CE on the
    same clean examples (the bug: H_alpha built with alpha = 0) falls far below it."""
    torch.set_num_threads(2)
    alpha = 20.0
    row = np.full(M, alpha / (M * (1 + alpha)))
    row[0] += 1 / (1 + alpha)
    floor = entropy(row)
    assert floor == pytest.approx(2.2935, abs=1e-4)
    config = trial_config(data_root, noise={"alpha": alpha}, train={"loss": "h_alpha", "epochs": 2},
                          model={"arch": "mlp1"}, data={"n_clean": 1000, "n_test": 1000})
    trial = Trial(config)
    y = torch.arange(M)
    torch.testing.assert_close(trial.to_target(y[None])[0].double(), eq3_target(y, alpha), rtol=1e-6, atol=0)
    reports = []
    trial.run(lambda rs: reports.append(rs[0]))
    for r in reports:
        assert floor - 1e-4 <= r.train_loss <= math.log(M) + 0.05, reports
    assert reports[-1].train_loss < reports[0].train_loss or reports[0].train_loss < math.log(M)
    assert reports[-1].test_acc > 0.5, reports  # the clean label still wins the argmax
    # The same examples with plain CE: far below the floor.
    ce = Trial(trial_config(data_root, noise={"alpha": 0.0}, train={"loss": "ce", "epochs": 2},
                            model={"arch": "mlp1"}, data={"n_clean": 1000, "n_test": 1000}))
    ce_reports = ce.run(lambda rs: None)
    assert ce_reports[-1].train_loss < floor - 1.0


@pytest.mark.parametrize("seed", [0, 3])
def test_h_alpha_trial_under_structured_noise_uses_the_structured_rows(data_root: Path, seed: int) -> None:
    """Soft targets = §3.2 / Fig. 4 target rows, computed here by hand from the wrong-class order:
    p_c = 1/(1+a) + a/(m(1+a)); k-th wrong class u + delta eps (m - 2k)/(m - 2)."""
    alpha, delta = 20.0, 0.5
    config = trial_config(data_root, noise={"alpha": alpha, "delta": delta, "order": "random", "seed": seed},
                          train={"loss": "h_alpha", "epochs": 1}, model={"arch": "perceptron"},
                          data={"n_clean": 200, "n_test": 200})
    trial = Trial(config)
    eps, u = 1 / (1 + alpha), alpha / (M * (1 + alpha))
    order = wrong_class_order("random", M, seed, None)
    expected = np.zeros((M, M))
    for c in range(M):
        expected[c, c] = eps + u
        for k, j in enumerate(order[c], start=1):
            expected[c, j] = u + delta * eps * (M - 2 * k) / (M - 2)
    got = trial.to_target(torch.arange(M)[None])[0].double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    uniform = eq3_target(torch.arange(M), alpha).numpy()
    assert np.abs(got - uniform).max() > 0.02  # not the uniform matrix
    # The loader still serves clean labels only (the noise lives in the loss).
    labels = torch.cat([y[0] for _, y in trial.loader])
    assert trial.noise.n_virtual == 200 and torch.equal(labels.sort().values, trial.noise.rows[:200].sort().values)
