from __future__ import annotations

import pytest
import torch

from harness.measure.cost import count_params
from harness.networks.zoo import MODELS, create_model
from methods.study import StudyError

MNIST_MODELS = {"lenet5", "lenet5_half", "mlp_1200_1200", "mlp_800_800"}


@pytest.mark.parametrize("name", MODELS.names())
def test_forward_is_classifier_of_features(name):
    shape = (1, 28, 28) if name in MNIST_MODELS else (3, 32, 32)
    model = create_model(name, num_classes=7, input_shape=shape).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        features = model.features(x)
        logits = model(x)
    assert logits.shape == (2, 7)
    assert torch.allclose(model.classifier(features), logits)


def test_reference_sizes():
    assert count_params(create_model("lenet5", 10)) == 61_706  # LeNet-5 with C5 as convolution
    assert count_params(create_model("mlp_1200_1200", 10)) == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10
    assert count_params(create_model("mlp_800_800", 10)) == 784 * 800 + 800 + 800 * 800 + 800 + 800 * 10 + 10
    # CIFAR ResNet-20/56 are 0.27M / 0.86M parameters (He et al. 2016, table 6)
    assert 0.26e6 < count_params(create_model("resnet20", 10, input_shape=(3, 32, 32))) < 0.28e6
    assert 0.85e6 < count_params(create_model("resnet56", 10, input_shape=(3, 32, 32))) < 0.87e6
    assert 11.1e6 < count_params(create_model("resnet18", 10, input_shape=(3, 32, 32))) < 11.2e6
    cifar100 = {"input_shape": (3, 32, 32), "num_classes": 100}
    # DenseNet-40 (k=12) 1.0M and DenseNet-BC-100 0.8M (Huang et al. 2017, table 2)
    assert 1.0e6 < count_params(create_model("densenet40", **cifar100)) < 1.1e6
    assert 0.75e6 < count_params(create_model("densenet100", **cifar100)) < 0.85e6
    assert 14.7e6 < count_params(create_model("vgg16", **cifar100)) < 14.8e6
    assert 3.2e6 < count_params(create_model("mobilenet_v1", **cifar100)) < 3.4e6
    assert 2.2e6 < count_params(create_model("mobilenet_v2", **cifar100)) < 2.5e6


def test_half_and_width_scale_channels():
    half = create_model("lenet5_half", 10)
    assert half.features(torch.zeros(1, 1, 28, 28)).shape[1] == 60
    assert create_model("lenet5", 10, width=0.5).features(torch.zeros(1, 1, 28, 28)).shape[1] == 60
    wide = create_model("resnet20", 10, width=2.0, input_shape=(3, 32, 32))
    assert wide.features(torch.zeros(1, 3, 32, 32)).shape[1] == 128


def test_lenet_fits_32px_inputs():
    model = create_model("lenet5", 10, input_shape=(3, 32, 32))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_model_suggests_a_name():
    with pytest.raises(StudyError, match="did you mean 'resnet20'"):
        create_model("resnet21", 10)
