"""The PyTorch peer of ``benchmarks/conv_step.py``: one LeNet-5 train step in torch on the CPU.

  python benchmarks/torch_lenet_step.py --batches 128,256,512,1000

Needs a Python with torch (not an lrjax dependency; ``conv_step.py --torch-python PY`` runs it
side by side). The network is lrjax's :class:`~lrjax.models.LeNet5` layer for layer (conv 5x5 x6
SAME, ReLU, 2x2 max-pool, conv 5x5 x16 VALID, ReLU, 2x2 max-pool, dense 120, 84, 10), NCHW as
torch prefers, SGD at 0.01 with cross-entropy, on random images; torch uses all cores
(``torch.get_num_threads()``). Prints one JSON line per batch size.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn


def lenet5() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


def measure(batch: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = lenet5()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - start) / steps)
    return {
        "batch": batch,
        "step_s": best,
        "images_s": batch / best,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="128,256,512,1000")
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    for batch in map(int, args.batches.split(",")):
        print(json.dumps(measure(batch, args.steps)), flush=True)


if __name__ == "__main__":
    main()
