"""Model zoo: ``create_model(name, num_classes, width=...)``.

Every model is split as ``forward(x) == classifier(features(x))`` so that
feature-based methods (KDGAN, DAFL) can pair any teacher with any student.
``features`` returns the last feature map (or vector for MLPs) before pooling.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from methods.registry import Registry

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
    for stage, (count, p) in enumerate(zip(blocks, planes, strict=True)):
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


# --- VGG-16 (CIFAR-style) -------------------------------------------------------

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@register_model("vgg16")
def vgg16(num_classes: int, width: float = 1.0, input_shape: Shape = (3, 32, 32)) -> ZooModel:
    """VGG-16 with BatchNorm for 32x32 inputs (as pruned by C2S2 and network slimming)."""
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for item in VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        out = scaled(item, width)
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    return ZooModel(nn.Sequential(*layers), classifier)


# --- MobileNets (CIFAR-style: stride-1 stem) --------------------------------------

def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


MOBILENET_V1 = (64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)


@register_model("mobilenet_v1")
def mobilenet_v1(num_classes: int, width: float = 1.0, input_shape: Shape = (3, 32, 32)) -> ZooModel:
    """MobileNet (Howard et al. 2017): depth-wise separable convolutions; ``width`` is alpha."""
    channels = scaled(32, width)
    layers: list[nn.Module] = [conv_bn(input_shape[0], channels, 3)]
    for item in MOBILENET_V1:
        out, stride = item if isinstance(item, tuple) else (item, 1)
        out = scaled(out, width)
        layers += [conv_bn(channels, channels, 3, stride, groups=channels), conv_bn(channels, out, 1)]
        channels = out
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    return ZooModel(nn.Sequential(*layers), classifier)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers = [conv_bn(cin, hidden, 1)] if expansion != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))


@register_model("mobilenet_v2")
def mobilenet_v2(num_classes: int, width: float = 1.0, input_shape: Shape = (3, 32, 32)) -> ZooModel:
    """MobileNetV2 (Sandler et al. 2018) with CIFAR strides (first two stages at stride 1)."""
    channels = scaled(32, width)
    layers: list[nn.Module] = [conv_bn(input_shape[0], channels, 3)]
    for expansion, out, count, stride in MOBILENET_V2:
        out = scaled(out, width)
        for i in range(count):
            layers.append(InvertedResidual(channels, out, stride if i == 0 else 1, expansion))
            channels = out
    last = scaled(1280, max(1.0, width))
    layers.append(conv_bn(channels, last, 1))
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, num_classes))
    return ZooModel(nn.Sequential(*layers), classifier)


# --- DenseNets ------------------------------------------------------------------

class DenseLayer(nn.Module):
    """BN-ReLU-Conv3x3 (or the bottleneck BN-ReLU-Conv1x1-BN-ReLU-Conv3x3); output concatenated."""

    def __init__(self, cin: int, growth: int, bottleneck: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if bottleneck:
            layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, 4 * growth, 1, bias=False)]
            cin = 4 * growth
        layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, growth, 3, padding=1, bias=False)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], 1)


def densenet(depth: int, growth: int, bottleneck: bool, compression: float, num_classes: int,
             width: float, input_shape: Shape) -> ZooModel:
    """CIFAR DenseNet (Huang et al. 2017): three dense blocks, transitions between them."""
    growth = scaled(growth, width)
    per_block = (depth - 4) // (6 if bottleneck else 3)
    channels = 2 * growth if bottleneck else 16 if width == 1.0 else scaled(16, width)
    layers: list[nn.Module] = [nn.Conv2d(input_shape[0], channels, 3, padding=1, bias=False)]
    for block in range(3):
        for _ in range(per_block):
            layers.append(DenseLayer(channels, growth, bottleneck))
            channels += growth
        if block < 2:
            out = int(channels * compression)
            layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, out, 1, bias=False),
                       nn.AvgPool2d(2)]
            channels = out
    layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    return ZooModel(nn.Sequential(*layers), classifier)


@register_model("densenet40")
def densenet40(num_classes: int, width: float = 1.0, input_shape: Shape = (3, 32, 32)) -> ZooModel:
    """DenseNet-40, growth rate 12, no bottleneck (1.0M parameters on CIFAR)."""
    return densenet(40, 12, False, 1.0, num_classes, width, input_shape)


@register_model("densenet100")
def densenet100(num_classes: int, width: float = 1.0, input_shape: Shape = (3, 32, 32)) -> ZooModel:
    """DenseNet-BC-100, growth rate 12 (0.8M parameters on CIFAR)."""
    return densenet(100, 12, True, 0.5, num_classes, width, input_shape)


# --- a small plain CNN ---------------------------------------------------------------

@register_model("cnn4")
def cnn4(num_classes: int, width: float = 1.0, input_shape: Shape = (3, 32, 32)) -> ZooModel:
    """Four Conv-BN-ReLU-MaxPool layers (32-64-128-256 channels): KDGAN's small student."""
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for out in (32, 64, 128, 256):
        out = scaled(out, width)
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        channels = out
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    return ZooModel(nn.Sequential(*layers), classifier)
