"""The train loop: plain PyTorch, no Ray, no Hydra.

Adadelta (as in the paper, §3.4), epochs over the diluted set, the clean test set evaluated after
every epoch (top-1 and top-5), bf16 autocast on CUDA. Each epoch is reported through a callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class EpochReport:
    epoch: int  # 1-based: the number of epochs completed
    train_loss: float
    test_acc: float
    test_top5: float
    images_per_s: float  # training images per second this epoch (evaluation excluded)


def evaluate(model: nn.Module, test: Batches, device: torch.device) -> tuple[float, float]:
    """(top-1, top-5) accuracy on a clean split."""
    model.eval()
    top1 = top5 = total = 0
    with torch.no_grad(), autocast(device):
        for x, y in test:
            logits = model(x)
            k = min(5, logits.shape[1])
            best = logits.topk(k, dim=1).indices
            top1 += (best[:, 0] == y).sum().item()
            top5 += (best == y[:, None]).any(1).sum().item()
            total += y.numel()
    model.train()
    return top1 / total, top5 / total


def confusion_matrix(model: nn.Module, test: Batches, device: torch.device, classes: int) -> torch.Tensor:
    """(classes, classes) int64 counts on a clean split: row = true class, column = predicted class."""
    model.eval()
    counts = torch.zeros(classes * classes, dtype=torch.int64, device=device)
    with torch.no_grad(), autocast(device):
        for x, y in test:
            counts += torch.bincount(y * classes + model(x).argmax(1), minlength=classes * classes)
    model.train()
    return counts.view(classes, classes).cpu()


def autocast(device: torch.device) -> torch.autocast:
    """bf16 on CUDA (tensor cores, no loss scaling needed); full precision elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train: Batches, test: Callable[[], Batches],
        epochs: int, device: torch.device, loss_fn: LossFn, on_epoch: Callable[[EpochReport], None],
        start_epoch: int = 0, set_epoch: Callable[[int], None] | None = None) -> EpochReport | None:
    """Train for epochs start_epoch+1 .. epochs; returns the last report."""
    model.to(device).train()
    report = None
    for epoch in range(start_epoch, epochs):
        if set_epoch is not None:
            set_epoch(epoch)
        start = time.perf_counter()
        # Losses accumulate on the device: a .item() per step would sync the GPU every step.
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for x, y in train:
            with autocast(device):
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().float() * y.numel()
            seen += y.numel()
        train_loss = loss_sum.item() / max(seen, 1)  # .item() syncs, so the time below is real
        images_per_s = seen / (time.perf_counter() - start)
        top1, top5 = evaluate(model, test(), device)
        report = EpochReport(epoch + 1, train_loss, top1, top5, images_per_s)
        on_epoch(report)
    return report
