"""The plain trainer and the tensor loader on real MNIST."""

from __future__ import annotations

from pathlib import Path

import torch

from loaders.noise import NoiseModel, NoiseSpec
from loaders.tensor import TensorLoader
from study.trial import Trial
from tests.conftest import trial_config


def test_trainer_learns_mnist_subset(data_root: Path) -> None:
    torch.set_num_threads(2)
    reports = []
    Trial(trial_config(data_root, train={"epochs": 3})).run(lambda rs: reports.append(rs[0]))
    assert [r.epoch for r in reports] == [1, 2, 3]
    assert reports[-1].test_acc >= 0.85, reports
    assert reports[-1].test_top5 >= reports[-1].test_acc
    assert all(r.images_per_s > 0 and r.train_loss > 0 for r in reports)


def test_epoch_visits_every_virtual_index_once(data_root: Path) -> None:
    trial = Trial(trial_config(data_root, noise={"alpha": 2.5, "seed": 1}, data={"n_clean": 300}))
    loader: TensorLoader = trial.loader
    assert len(loader) == -(-1050 // 128)
    order = loader.order()
    assert torch.equal(order.sort().values, torch.arange(1050))
    loader.set_epoch(1)
    assert not torch.equal(order, loader.order())  # a fresh permutation each epoch


def test_batches_are_normalised_images_with_noise_labels(data_root: Path) -> None:
    trial = Trial(trial_config(data_root, noise={"alpha": 1.0}, data={"n_clean": 200}))
    xs, ys = zip(*trial.loader)
    x, y = torch.cat(xs), torch.cat(ys, dim=1)[0]  # one member: label row 0
    assert x.shape == (400, 1, 28, 28) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.3 and 0.7 < x.std().item() < 1.3  # MNIST-normalised
    expected = NoiseModel(NoiseSpec(alpha=1.0), trial.noise.rows, 10)(trial.loader.order())[1]
    assert torch.equal(y, expected)


def test_resume_from_state_continues_epochs(data_root: Path) -> None:
    config = trial_config(data_root, model={"arch": "mlp1"}, data={"n_clean": 500}, train={"epochs": 2})
    first = Trial(config)
    first.run(lambda r: None)
    resumed = Trial({**config, "train": {**config["train"], "epochs": 3}})
    resumed.load_state_dict(first.state_dict())
    reports = []
    resumed.run(lambda rs: reports.append(rs[0]))
    assert [r.epoch for r in reports] == [3]
