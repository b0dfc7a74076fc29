"""PyTorch's own first-order optimizers, registered by name (``adam``, ``sgd``, …)."""

from __future__ import annotations

import torch

from pinnopt.optim.registry import register_optimizer

for _name, _cls, _lr, _text in [
    ("adam", torch.optim.Adam, 1e-3, "Adam (torch.optim.Adam)"),
    ("adamw", torch.optim.AdamW, 1e-3, "AdamW, decoupled weight decay"),
    ("sgd", torch.optim.SGD, 1e-3, "SGD with optional momentum"),
    ("rmsprop", torch.optim.RMSprop, 1e-3, "RMSprop"),
    ("adagrad", torch.optim.Adagrad, 1e-2, "Adagrad"),
]:
    register_optimizer(_name, _lr, description=_text)(_cls)
