"""A folder of the user's images (torchvision's ImageFolder layout) as a data set."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from harness.cli.main import main
from harness.data.datasets import load_dataset
from harness.errors import DataError, SpecError
from harness.study.sweep import trial_splits
from tests.support.specs import small_spec
from tests.torchvision_files import write_image_folder


def _spec(root, **dataset):
    fields = {"dataset.name": "imagefolder", "dataset.root": str(root), "dataset.val_fraction": "0.25"}
    return small_spec(**fields, **{f"dataset.{k}": str(v) for k, v in dataset.items()})


def test_images_are_decoded_once_into_the_splits_with_their_classes(tmp_path):
    first = write_image_folder(tmp_path)
    data = load_dataset(_spec(tmp_path).dataset)
    assert data.num_classes == 3 and data.input_shape == (3, 12, 12)
    assert len(data.train) + len(data.val) == 36 and len(data.val) == 9 and len(data.test) == 12
    assert data.train.x.dtype == np.uint8 and sorted(set(data.test.y)) == [0, 1, 2]
    everything = np.concatenate([data.train.x, data.val.x])  # the first image, channels first, is among them
    assert any(np.array_equal(image, first.transpose(2, 0, 1)) for image in everything)
    assert 0 < data.mean[0] < 1 and len(data.mean) == 3


def test_grey_images_are_one_channel_and_resized_when_asked(tmp_path):
    write_image_folder(tmp_path, mode="L", size=10)
    data = load_dataset(_spec(tmp_path, image_size=16).dataset)
    assert data.input_shape == (1, 16, 16)
    assert data.fingerprint != load_dataset(_spec(tmp_path).dataset).fingerprint  # a teacher per image size


def test_a_data_free_study_on_an_image_folder_ships_no_training_image(tmp_path):
    write_image_folder(tmp_path)
    spec = _spec(tmp_path)
    data = load_dataset(spec.dataset)
    dafl = small_spec(**{"method": "dafl", "search.space": "{}",
                         "search.space.lr_student": "{loguniform: [0.001, 0.01]}",
                         "dataset.name": "imagefolder", "dataset.root": str(tmp_path), "dataset.val_fraction": "0.25",
                         "budget.epochs": "2"})
    assert len(trial_splits(dafl, data).train) == 0 and len(trial_splits(spec, data).train) == len(data.train)


def test_an_image_folder_too_large_for_its_memory_limit_says_how_large(tmp_path):
    write_image_folder(tmp_path)
    with pytest.raises(DataError, match=r"^dataset: 48 images of 3x12x12 take 0.0 GB decoded, more than "
                                        r"dataset.memory_gb \(1e-06\); set dataset.image_size smaller"):
        load_dataset(_spec(tmp_path, memory_gb=1e-6).dataset)


def test_images_of_mixed_sizes_need_an_image_size(tmp_path):
    write_image_folder(tmp_path)
    write_image_folder(tmp_path / "more", size=9)
    (tmp_path / "more" / "train" / "class0" / "0.png").rename(tmp_path / "train" / "class0" / "zz.png")
    with pytest.raises(DataError, match=r"is 9x9, the first image 12x12; set dataset.image_size"):
        load_dataset(_spec(tmp_path).dataset)
    assert load_dataset(_spec(tmp_path, image_size=12).dataset).input_shape == (3, 12, 12)


def test_an_image_folder_option_on_another_data_set_is_refused():
    with pytest.raises(SpecError, match=r"^dataset.image_size: 'digits' does not take it"):
        small_spec(**{"dataset.image_size": "32"})


def test_an_image_folder_without_its_test_folder_is_one_line_with_exit_2(tmp_path, capsys):
    write_image_folder(tmp_path / "images")
    (tmp_path / "images" / "test").rename(tmp_path / "images" / "held-out")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "study": "folder", "method": "kd", "dataset": {"name": "imagefolder", "root": str(tmp_path / "images")},
        "teacher": {"model": "lenet5_half"}, "student": {"model": "lenet5_half", "width": 0.5},
        "search": {"space": {"lr": {"loguniform": [0.01, 0.05]}}}}))
    assert main(["check", str(spec), "--storage", str(tmp_path / "studies")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: dataset: image folder '{tmp_path / 'images' / 'test'}' does not exist")
    assert "\n" not in err
    assert main(["check", str(spec), "--set", "dataset.test=held-out", "--storage", str(tmp_path / "studies")]) == 0


def test_a_kd_study_runs_on_an_image_folder(tmp_path):
    write_image_folder(tmp_path / "images", per_class=(16, 4), size=16)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "study": "folder", "method": "kd",
        "dataset": {"name": "imagefolder", "root": str(tmp_path / "images"), "image_size": 28, "val_fraction": 0.25},
        "teacher": {"model": "lenet5_half", "recipe": {"epochs": 3, "batch_size": 16}},
        "student": {"model": "lenet5_half", "width": 0.5}, "budget": {"epochs": 2}, "asha": {"grace_period": 2},
        "search": {"searcher": "random", "num_samples": 1, "space": {"lr": 0.02, "batch_size": 16}},
        "measure": {"repeats": 3, "rounds": 1}}))
    run = subprocess.run([sys.executable, "-m", "harness", "sweep", str(spec), "--storage", str(tmp_path / "s")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    trials = pd.read_parquet(tmp_path / "s" / "folder" / "trials.parquet")
    assert trials["status"].tolist() == ["completed"] and trials["dataset"].tolist() == ["imagefolder"]


def test_the_image_folder_example_checks_on_a_folder_of_images(tmp_path, capsys):
    write_image_folder(tmp_path / "images", size=20)
    example = "search_spaces/examples/imagefolder.yaml"
    assert main(["check", example, "--set", f"dataset.root={tmp_path / 'images'}",
                 "--storage", str(tmp_path / "studies")]) == 0
    out = capsys.readouterr().out
    assert "imagefolder found: train 29, validation 7 (split seed 0), test 12, images (3, 32, 32), 3 classes" in out
