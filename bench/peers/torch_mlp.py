"""PyTorch eager, as a PyTorch user writes it: nn.Sequential, CrossEntropyLoss, torch.optim."""

from __future__ import annotations

import itertools

import numpy as np


class TorchMLP:
    def __init__(self, sizes: tuple[int, ...], hidden: str, optimizer: str, lr: float, seed: int = 0,
                 dtype: str = "float32", fused: bool = False, device: str = "cpu",
                 batch_norm: bool = False) -> None:
        import torch
        from torch import nn

        self.torch = torch
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        act = nn.ReLU if hidden == "relu" else nn.Sigmoid
        layers: list = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            hidden_layer = i < len(sizes) - 2
            layers.append(nn.Linear(a, b, bias=not (batch_norm and hidden_layer)))
            if hidden_layer:
                layers += [nn.BatchNorm1d(b), act()] if batch_norm else [act()]
        self.model = nn.Sequential(*layers).to(self.device, self.dtype)
        self.loss = nn.CrossEntropyLoss()
        params = self.model.parameters()
        if optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=lr)
        else:  # fused where the build offers it, else the multi-tensor (foreach) path
            options = {"fused": True} if fused else {"foreach": True}
            self.opt = torch.optim.Adam(params, lr=lr, **options)

    def to_device(self, x: np.ndarray, y: np.ndarray) -> tuple:
        t = self.torch
        return t.as_tensor(x, dtype=self.dtype, device=self.device), t.as_tensor(y, device=self.device)

    def train_epoch(self, x, y, batch_size: int, rng: np.random.Generator, limit: int | None = None) -> None:
        torch = self.torch
        n = x.shape[0] if limit is None else min(limit, x.shape[0])
        order = torch.as_tensor(rng.permutation(x.shape[0])[:n], device=self.device)
        model, loss_fn, opt = self.model, self.loss, self.opt
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()

    def predict(self, x) -> np.ndarray:
        with self.torch.no_grad():
            return self.torch.softmax(self.model(x), dim=1).cpu().numpy()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
