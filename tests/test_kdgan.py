"""KDGAN in a plain PyTorch loop: KD as a special case, the adapter and the discriminator."""
from __future__ import annotations

import pytest
import torch

import methods
from harness.errors import SpecError
from harness.networks.zoo import create_model
from methods.kdgan import FeatureAdapter
from methods.training import evaluate
from tests.support.contexts import method_context
from tests.support.specs import small_spec

KDGAN = methods.METHODS.get("kdgan")


@pytest.fixture(scope="module")
def digits_teacher(lenet5_teacher, digits_data):
    assert evaluate(lenet5_teacher, digits_data.val)["acc"] > 0.9  # its features mean something
    return lenet5_teacher


def _method(name, values, data, teacher, student="lenet5_half", epochs=2, input_shape=(1, 28, 28)):
    cls = methods.METHODS.get(name)
    return cls(method_context(student, teacher, data, epochs, input_shape), cls.make_params(values))


ZERO_GAN = {"w_adv": 0.0, "w_shared": 0.0, "w_l2": 0.0}


def test_with_gan_and_shared_weights_at_zero_the_loss_is_kd(digits_data, digits_teacher):
    alpha, tau = 0.7, 3.0
    kd = _method("kd", {"alpha": alpha, "tau": tau}, digits_data, digits_teacher)
    kdgan = _method("kdgan", {"w_ce": 1 - alpha, "w_kd": alpha, "tau": tau, **ZERO_GAN}, digits_data, digits_teacher)
    x, y = digits_data.train.x[:64], digits_data.train.y[:64]
    assert torch.equal(kdgan.loss(x, y), kd.loss(x, y))


@pytest.mark.parametrize("mix", ["weights", "alpha"])
def test_with_gan_and_shared_weights_at_zero_training_is_kd_step_for_step(digits_data, digits_teacher, mix):
    alpha, tau = 0.3, 3.0
    kd = _method("kd", {"alpha": alpha, "tau": tau, "batch_size": 64}, digits_data, digits_teacher)
    weights = {"w_ce": 1 - alpha, "w_kd": alpha} if mix == "weights" else {"alpha": alpha}
    kdgan = _method("kdgan", {**weights, "tau": tau, "batch_size": 64, **ZERO_GAN}, digits_data, digits_teacher)
    for epoch in range(2):
        assert kd.train_step(epoch) == kdgan.train_step(epoch)  # no GAN metrics either: nothing ran
    kd_state, kdgan_state = kd.export().state_dict(), kdgan.export().state_dict()
    assert all(torch.equal(kd_state[k], kdgan_state[k]) for k in kd_state)


def test_each_feature_term_changes_training(digits_data, digits_teacher):
    kd = _method("kd", {"alpha": 0.9, "batch_size": 64}, digits_data, digits_teacher, epochs=1)
    kd.train_step(0)
    for term in ZERO_GAN:
        kdgan = _method("kdgan", {**ZERO_GAN, term: 0.5, "batch_size": 64}, digits_data, digits_teacher, epochs=1)
        metrics = kdgan.train_step(0)
        assert metrics[term.replace("w_", "") + "_loss"] > 0
        assert not torch.equal(kd.export().state_dict()["head.3.weight"], kdgan.export().state_dict()["head.3.weight"])


def test_the_exported_student_has_no_adapter_or_discriminator(digits_data, digits_teacher):
    kdgan = _method("kdgan", {"w_adv": 0.1, "w_shared": 0.5, "w_l2": 0.1}, digits_data, digits_teacher)
    kdgan.train_step(0)
    exported = kdgan.export()
    fresh = create_model("lenet5_half", 10)
    assert exported.state_dict().keys() == fresh.state_dict().keys()
    assert sum(p.numel() for p in exported.parameters()) == sum(p.numel() for p in fresh.parameters())
    helpers = {id(p) for p in [*kdgan.adapter.parameters(), *kdgan.discriminator.parameters()]}
    assert len(helpers) > 0 and not helpers & {id(p) for p in exported.parameters()}
    # lenet5_half has 60 C5 maps, lenet5 120: the adapter is a learned 1x1 convolution
    assert kdgan.adapter.project.weight.shape == (120, 60, 1, 1)


def test_the_discriminator_learns_to_tell_teacher_from_student_features(digits_data, digits_teacher):
    kdgan = _method("kdgan", {**ZERO_GAN, "w_adv": 1e-6, "d_steps": 3, "d_lr": 1e-3, "batch_size": 64},
                    digits_data, digits_teacher, epochs=1)
    first = kdgan.train_step(0)["d_loss"]
    x = digits_data.val.x[:256]
    with torch.no_grad():
        real = kdgan.discriminator(digits_teacher.features(x)).mean()
        fake = kdgan.discriminator(kdgan.adapter(kdgan.ctx.student.features(x))).mean()
    assert real > fake + 0.3  # least squares targets: 1 for the teacher, 0 for the student
    assert first < 0.25  # a discriminator that cannot tell the two apart does no better than 0.25 (D = 0.5)


def test_the_discriminator_never_steps_the_student_or_the_teacher(digits_data, digits_teacher):
    kdgan = _method("kdgan", {}, digits_data, digits_teacher)
    student = {k: v.clone() for k, v in kdgan.ctx.student.state_dict().items()}
    teacher = {k: v.clone() for k, v in digits_teacher.state_dict().items()}
    x = digits_data.train.x[:32]
    features = kdgan.adapter(kdgan.ctx.student.features(x))
    kdgan.train_discriminator(digits_teacher.features(x), features.detach())
    assert all(torch.equal(v, kdgan.ctx.student.state_dict()[k]) for k, v in student.items())
    assert all(torch.equal(v, digits_teacher.state_dict()[k]) for k, v in teacher.items())


@pytest.mark.parametrize("teacher_name, student_name, num_classes", [
    ("densenet40", "cnn4", 100), ("densenet100", "mobilenet_v1", 100), ("mlp_1200_1200", "mlp_800_800", 10),
])
def test_paper_pairs_get_an_adapter_to_the_teacher_feature_shape(teacher_name, student_name, num_classes):
    shape = (3, 32, 32) if num_classes == 100 else (1, 28, 28)
    teacher = create_model(teacher_name, num_classes, width=0.25, input_shape=shape).eval()
    student = create_model(student_name, num_classes, width=0.25, input_shape=shape).eval()
    x = torch.randn(2, *shape)
    f_s, f_t = student.features(x), teacher.features(x)
    adapter = FeatureAdapter(f_s.shape[1:], f_t.shape[1:])
    assert adapter(f_s).shape == f_t.shape
    assert teacher.classifier(adapter(f_s)).shape == (2, num_classes)


def test_a_kdgan_student_learns_digits_and_beats_chance_on_every_term(digits_data, digits_teacher):
    kdgan = _method("kdgan", {"w_adv": 0.05, "w_shared": 0.5, "w_l2": 0.1, "lr": 0.01, "batch_size": 32},
                    digits_data, digits_teacher, epochs=4)
    for epoch in range(4):
        metrics = kdgan.train_step(epoch)
    assert evaluate(kdgan.export(), digits_data.val)["acc"] > 0.85
    assert metrics["shared_loss"] < 1.0  # student features now make sense to the teacher's classifier


def test_alpha_sets_the_kd_mix_and_cannot_be_given_with_it():
    params = KDGAN.make_params({"alpha": 0.25})
    assert (params.w_kd, params.w_ce) == (0.25, 0.75)
    assert (KDGAN.make_params({}).w_kd, KDGAN.make_params({}).w_ce) == (0.9, 0.1)
    with pytest.raises(SpecError, match="remove w_ce or alpha"):
        small_spec(method="kdgan", teacher={"model": "lenet5"},
                   **{"search.space.alpha": "{uniform: [0.1, 0.9]}", "search.space.w_ce": "0.2"})


def test_discriminator_steps_must_be_positive():
    with pytest.raises(SpecError, match="d_steps"):
        small_spec(method="kdgan", teacher={"model": "lenet5"}, **{"search.space.d_steps": "{int: [0, 3]}"})


def test_on_feature_vectors_the_discriminator_is_its_3x3_self_at_a_ninth_of_the_work():
    from methods.kdgan import FeatureDiscriminator

    torch.manual_seed(0)
    vectors = FeatureDiscriminator(120, 16, (1, 1))  # LeNet-5's features: 120 maps of 1x1
    after_vectors = torch.rand(1)
    torch.manual_seed(0)
    maps = FeatureDiscriminator(120, 16, (3, 3))
    assert torch.equal(torch.rand(1), after_vectors)  # the same random draws: what follows trains alike
    assert vectors.net[0].kernel_size == (1, 1) and maps.net[0].kernel_size == (3, 3)
    f = torch.randn(8, 120, 1, 1)
    torch.testing.assert_close(vectors(f), maps(f), rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in vectors.parameters()) < sum(p.numel() for p in maps.parameters()) / 5
