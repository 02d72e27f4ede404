from __future__ import annotations

import pytest
import torch

from harness.errors import SpecError
from harness.zoo import MODELS, create_model
from harness.measure import count_params

SHAPES = {"resnet": (3, 32, 32)}


@pytest.mark.parametrize("name", MODELS.names())
def test_forward_is_classifier_of_features(name):
    shape = (3, 32, 32) if name.startswith("resnet") else (1, 28, 28)
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


def test_half_and_width_scale_channels():
    half = create_model("lenet5_half", 10)
    assert half.features(torch.zeros(1, 1, 28, 28)).shape[1] == 60
    assert create_model("lenet5", 10, width=0.5).features(torch.zeros(1, 1, 28, 28)).shape[1] == 60
    assert create_model("resnet20", 10, width=2.0, input_shape=(3, 32, 32)).features(torch.zeros(1, 3, 32, 32)).shape[1] == 128


def test_lenet_fits_32px_inputs():
    model = create_model("lenet5", 10, input_shape=(3, 32, 32))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_model_suggests_a_name():
    with pytest.raises(SpecError, match="did you mean 'resnet20'"):
        create_model("resnet21", 10)
