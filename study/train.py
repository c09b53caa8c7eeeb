"""The train loop: plain PyTorch, no Ray, no Hydra.

A trial trains a group of K members, models of one architecture that see the same batches and differ
in their learning rate, initial weights and noisy labels. K = 1 is a plain model with torch's Adadelta
(as in the paper, §3.4); K > 1 is `Fused`: the members' weights stacked, forward and backward under
torch.func.vmap, Adadelta with one learning rate per member in one vectorised update (as HFTA fuses
optimizers), the step compiled on CUDA. Epochs over the diluted set; each member's clean test accuracy
(top-1 and top-5), and its held-out validation accuracy where there is a validation split, after every epoch; bf16 autocast on CUDA. Each epoch is reported through a callback.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from study import losses

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
RHO, EPS = 0.9, 1e-6  # torch.optim.Adadelta's defaults, which the paper's setup uses


@dataclass
class EpochReport:
    epoch: int  # 1-based: the number of epochs completed
    train_loss: float
    test_acc: float
    test_top5: float
    images_per_s: float  # training images per second this epoch through the group (evaluation excluded)
    val_acc: float = float("nan")  # top-1 on the held-out clean split (data.n_val > 0); NaN without one


def autocast(device: torch.device) -> torch.autocast:
    """bf16 on CUDA (tensor cores, no loss scaling needed); full precision elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


class Single:
    """One member: a plain model and torch's Adadelta."""

    def __init__(self, model: nn.Module, lr: float, device: torch.device) -> None:
        self.model = model.to(device).train()
        self.optimizer = torch.optim.Adadelta(self.model.parameters(), lr=lr)
        self.device = device

    def step(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch; target (1, B[, m]); returns the loss (1,)."""
        with autocast(self.device):
            loss = losses.loss(self.model(x), target[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()[None]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(1, B, m) in eval mode (ResNets' BatchNorm)."""
        self.model.eval()
        out = self.model(x)[None]
        self.model.train()
        return out

    def weights(self, k: int) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


class Fused:
    """K members as one: stacked weights, vmap, Adadelta with a learning rate per member.

    Only for models without buffers (MLPs, ConvNets): a BatchNorm's running statistics would need
    per-member semantics, so ResNets train as K = 1 groups.
    """

    X_DIM: int | None = None  # the batch's member dimension: none, every member trains on one shared batch

    def __init__(self, models: Sequence[nn.Module], lrs: Sequence[float], device: torch.device,
                 compile_mode: str | None = None) -> None:
        if any(True for m in models for _ in m.buffers()):
            raise ValueError("Fused trains models without buffers only (no BatchNorm)")
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture; weights come from self.params
        params, _ = stack_module_state(list(models))
        self.params = {k: p.detach().to(device) for k, p in params.items()}
        self.square_avg = {k: torch.zeros_like(p) for k, p in self.params.items()}
        self.acc_delta = {k: torch.zeros_like(p) for k, p in self.params.items()}
        # in the weights' dtype: a float32 lr would round a float64 member's 0.1, which torch's Adadelta keeps exact
        self.lr = torch.tensor(list(lrs), dtype=next(iter(self.params.values())).dtype, device=device)
        self.device = device
        self._step = self._fused_step
        if compile_mode is not None:
            torch._dynamo.reset()  # a process trains one group at a time: earlier groups' entries would hit dynamo's recompile limit
            if compile_mode == "reduce-overhead":  # CUDA graphs need the mutated state at fixed addresses
                for t in (*self.params.values(), *self.square_avg.values(), *self.acc_delta.values(), self.lr):
                    torch._dynamo.mark_static_address(t)
            self._step = torch.compile(self._fused_step, mode=None if compile_mode == "default" else compile_mode)

    def _member_loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return losses.loss(functional_call(self.base, params, (x,)), target)

    def _fused_step(self, params: dict[str, torch.Tensor], square_avg: dict[str, torch.Tensor],
                    acc_delta: dict[str, torch.Tensor], lr: torch.Tensor, x: torch.Tensor,
                    target: torch.Tensor) -> torch.Tensor:
        with autocast(self.device):
            grads, loss = vmap(grad_and_value(self._member_loss), in_dims=(0, self.X_DIM, 0))(params, x, target)
        for name, p in params.items():  # torch.optim.Adadelta's update, op for op, with lr (K,) broadcast
            g, sq, acc = grads[name], square_avg[name], acc_delta[name]
            sq.mul_(RHO).addcmul_(g, g, value=1 - RHO)
            delta = acc.add(EPS).sqrt_().div_(sq.add(EPS).sqrt_()).mul_(g)
            acc.mul_(RHO).addcmul_(delta, delta, value=1 - RHO)
            p.sub_(delta * lr.view(-1, *[1] * (p.dim() - 1)))
        return loss

    def step(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One optimizer step of every member on the shared batch x; target (K, B[, m]); losses (K,)."""
        return self._step(self.params, self.square_avg, self.acc_delta, self.lr, x, target)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, m)."""
        return vmap(lambda p: functional_call(self.base, p, (x,)))(self.params)

    def weights(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's weights, named as in its plain model's state_dict."""
        return {name: p[k] for name, p in self.params.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.params, "square_avg": self.square_avg, "acc_delta": self.acc_delta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("params", "square_avg", "acc_delta"):  # in place: compiled steps keep their addresses
            for name, t in getattr(self, key).items():
                t.copy_(state[key][name])


Net = Single | Fused


def evaluate(net: Net, test: Batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's (top-1, top-5) accuracy on a clean split: two (K,) tensors; top-5 is NaN with 5 classes or
    fewer (every guess would be right)."""
    top1 = top5 = total = classes = 0
    with torch.no_grad(), autocast(net.device):
        for x, y in test:
            logits = net.logits(x)
            classes = logits.shape[-1]
            best = logits.topk(min(5, classes), dim=-1).indices  # (K, B, 5)
            top1 = top1 + (best[..., 0] == y).sum(-1)
            top5 = top5 + (best == y[:, None]).any(-1).sum(-1)
            total += y.numel()
    top1, top5 = top1.double().cpu() / total, top5.double().cpu() / total
    return top1, top5 if classes > 5 else torch.full_like(top5, float("nan"))


def confusion_matrices(net: Net, test: Batches, classes: int) -> torch.Tensor:
    """(K, classes, classes) int64 counts on a clean split: row = true class, column = predicted class."""
    counts = 0
    with torch.no_grad(), autocast(net.device):
        for x, y in test:
            predicted = net.logits(x).argmax(-1)  # (K, B)
            k = predicted.shape[0]
            cell = torch.arange(k, device=y.device)[:, None] * classes * classes + y * classes + predicted
            counts = counts + torch.bincount(cell.flatten(), minlength=k * classes * classes)
    return counts.view(-1, classes, classes).cpu()


@contextlib.contextmanager
def flushed_denormals() -> Iterator[None]:
    """Denormals flush to zero while training on a CPU: Adadelta's averages of a unit that gets no gradient (a dead
    ReLU) decay x RHO a step into the denormal range and stay there (0.9 x 4*2**-149 rounds back to 4*2**-149),
    where each x86 float op on them is many times slower (bench.denormals). The flag is the calling thread's: CPU
    trials train on one intra-op thread each. On exit, torch's default (IEEE denormals) again; CUDA is unaffected."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def fit(net: Net, train: Batches, test: Callable[[], Batches], epochs: int, to_target: losses.Targets,
        on_epoch: Callable[[list[EpochReport]], None], start_epoch: int = 0,
        set_epoch: Callable[[int], None] | None = None,
        val: Callable[[], Batches] | None = None) -> list[EpochReport]:
    """Train every member for epochs start_epoch+1 .. epochs; returns the last reports, one per member.
    With `val` (a held-out clean split) each member's val_acc is measured every epoch too."""
    reports: list[EpochReport] = []
    with flushed_denormals():
        for epoch in range(start_epoch, epochs):
            if set_epoch is not None:
                set_epoch(epoch)
            start = time.perf_counter()
            # Losses accumulate on the device: a .item() per step would sync the GPU every step.
            loss_sum = torch.zeros((), device=net.device)
            seen = 0
            for x, y in train:
                loss_sum = loss_sum + net.step(x, to_target(y)).detach().float() * y.shape[-1]
                seen += y.shape[-1]
            train_loss = (loss_sum / max(seen, 1)).cpu()  # syncs, so the time below is real
            images_per_s = seen / (time.perf_counter() - start)
            top1, top5 = evaluate(net, test())
            val_top1 = evaluate(net, val())[0] if val is not None else torch.full_like(top1, float("nan"))
            reports = [EpochReport(epoch + 1, float(train_loss[k]), float(top1[k]), float(top5[k]), images_per_s,
                                   float(val_top1[k])) for k in range(len(top1))]
            on_epoch(reports)
    return reports
