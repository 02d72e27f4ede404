"""Model zoo: ``create_model(name, num_classes, width=...)``.

Every model is split as ``forward(x) == classifier(features(x))`` so that
feature-based methods (KDGAN, DAFL) can pair any teacher with any student.
``features`` returns the last feature map (or vector for MLPs) before pooling.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from harness.registry import Registry

Shape = tuple[int, int, int]
ModelFactory = Callable[..., "ZooModel"]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    return MODELS.register(name)


def create_model(
    name: str, num_classes: int, width: float = 1.0, input_shape: Shape = (1, 28, 28)
) -> "ZooModel":
    """Build a registered model for images of ``input_shape`` (C, H, W)."""
    return MODELS.get(name)(num_classes=num_classes, width=width, input_shape=tuple(input_shape))


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class ZooModel(nn.Module):
    """A network made of a feature extractor and a classifier head."""

    def __init__(self, features: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.feature_extractor = features
        self.head = classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_extractor(x)

    def classifier(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature_extractor(x))


# --- LeNet-5 ---------------------------------------------------------------

def lenet5(num_classes: int, width: float, input_shape: Shape) -> ZooModel:
    """LeNet-5 with C5 as a convolution, as in DAFL: features are C5's 120 maps."""
    c, h, _ = input_shape
    c1, c3, c5, f6 = (scaled(n, width) for n in (6, 16, 120, 84))
    side = ((h // 2) - 4) // 2  # after conv1 (padding 2), pool, conv3, pool
    features = nn.Sequential(
        nn.Conv2d(c, c1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(c1, c3, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(c3, c5, side), nn.ReLU(inplace=True),
    )
    classifier = nn.Sequential(
        nn.Flatten(), nn.Linear(c5, f6), nn.ReLU(inplace=True), nn.Linear(f6, num_classes)
    )
    return ZooModel(features, classifier)


@register_model("lenet5")
def lenet5_full(num_classes: int, width: float = 1.0, input_shape: Shape = (1, 28, 28)) -> ZooModel:
    return lenet5(num_classes, width, input_shape)


@register_model("lenet5_half")
def lenet5_half(num_classes: int, width: float = 1.0, input_shape: Shape = (1, 28, 28)) -> ZooModel:
    return lenet5(num_classes, 0.5 * width, input_shape)


# --- Hinton's MLPs -----------------------------------------------------------

def mlp(hidden: int, num_classes: int, width: float, input_shape: Shape) -> ZooModel:
    c, h, w = input_shape
    units = scaled(hidden, width)
    features = nn.Sequential(
        nn.Flatten(),
        nn.Linear(c * h * w, units), nn.ReLU(inplace=True),
        nn.Linear(units, units), nn.ReLU(inplace=True),
    )
    return ZooModel(features, nn.Linear(units, num_classes))


@register_model("mlp_1200_1200")
def mlp_1200(num_classes: int, width: float = 1.0, input_shape: Shape = (1, 28, 28)) -> ZooModel:
    """Hinton et al.'s 784-1200-1200-10 teacher."""
    return mlp(1200, num_classes, width, input_shape)


@register_model("mlp_800_800")
def mlp_800(num_classes: int, width: float = 1.0, input_shape: Shape = (1, 28, 28)) -> ZooModel:
    """Hinton et al.'s 784-800-800-10 student."""
    return mlp(800, num_classes, width, input_shape)


# --- ResNets ------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:  # projection shortcut (option B)
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet(
    blocks: tuple[int, ...], planes: tuple[int, ...], num_classes: int, width: float, input_shape: Shape
) -> ZooModel:
    """CIFAR-style ResNet: 3x3 stem, no max-pool, one stage per entry of ``planes``."""
    planes = tuple(scaled(p, width) for p in planes)
    layers: list[nn.Module] = [
        nn.Conv2d(input_shape[0], planes[0], 3, 1, 1, bias=False),
        nn.BatchNorm2d(planes[0]), nn.ReLU(inplace=True),
    ]
    in_planes = planes[0]
    for stage, (count, p) in enumerate(zip(blocks, planes)):
        for i in range(count):
            layers.append(BasicBlock(in_planes, p, 2 if stage > 0 and i == 0 else 1))
            in_planes = p
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_planes, num_classes))
    model = ZooModel(nn.Sequential(*layers), classifier)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


@register_model("resnet20")
def resnet20(num_classes: int, width: float = 1.0, input_shape: Shape = (3, 32, 32)) -> ZooModel:
    return resnet((3, 3, 3), (16, 32, 64), num_classes, width, input_shape)


@register_model("resnet56")
def resnet56(num_classes: int, width: float = 1.0, input_shape: Shape = (3, 32, 32)) -> ZooModel:
    return resnet((9, 9, 9), (16, 32, 64), num_classes, width, input_shape)


@register_model("resnet18")
def resnet18(num_classes: int, width: float = 1.0, input_shape: Shape = (3, 32, 32)) -> ZooModel:
    return resnet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, width, input_shape)


@register_model("resnet34")
def resnet34(num_classes: int, width: float = 1.0, input_shape: Shape = (3, 32, 32)) -> ZooModel:
    return resnet((3, 4, 6, 3), (64, 128, 256, 512), num_classes, width, input_shape)
