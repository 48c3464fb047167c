"""Flax trainees for lrjax: pure-``params`` models that vmap over many trainees and run fast on
XLA:CPU (see :mod:`lrjax.models.layers`)."""

from lrjax.models.cnn import Cifar10CNN, LeNet5, MnistCNN
from lrjax.models.layers import Conv2D, max_pool, max_pool_2x2
from lrjax.models.mlp import MLP
from lrjax.models.resnet import BasicBlock, ResNet

__all__ = [
    "MLP",
    "BasicBlock",
    "Cifar10CNN",
    "Conv2D",
    "LeNet5",
    "MnistCNN",
    "ResNet",
    "max_pool",
    "max_pool_2x2",
]
