"""The pretrain CLI on a user's own image folder (with unreadable files), its TensorBoard logs and
plots, and clear errors for dataset flags."""

import json
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from conftest import run_pretrain as _run, run_pretrain_cases
from image_folders import make_folder, plant_bad_files


@pytest.mark.slow
def test_image_folder_run_skips_unreadable_images_and_writes_logs_and_plots(tmp_path):
    root = str(tmp_path / "photos")
    make_folder(root, per_class=12)
    plant_bad_files(os.path.join(root, "train", "cat"))
    model_dir = str(tmp_path / "run")
    done = _run("--dataset=folder", f"--data_dir={root}", "--image_size=16", "--augment=simclr", "--width=8",
                "--framework=simclr", "--embedding_dim=16", "--batch_size=8", "--epochs=2", "--knn_k=5",
                "--grid_size=2", "--export=false", f"--model_dir={model_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "36 images, 3 classes, 16x16x3 crops of the full images" in out and "skipped 3 unreadable" in out
    assert "skipped 3 unreadable image(s)" in out
    listed = open(os.path.join(model_dir, "skipped_images.txt")).read().splitlines()
    assert sorted(os.path.basename(line.split("\t")[0]) for line in listed) == [
        "empty.png", "notes.png", "truncated.jpg"]
    assert "epoch 2/2" in out and "kNN" in out and "lr" in out
    rows = [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    # TensorBoard: every loss term, lambda, the learning rate and kNN as epoch scalars; mixed views as images.
    scalars = event_accumulator.EventAccumulator(os.path.join(model_dir, "tensorboard", "train"),
                                                 size_guidance={"tensors": 0})
    scalars.Reload()
    tags = set(scalars.Tags()["tensors"])
    for tag in ("epoch_loss", "epoch_loss_clean", "epoch_loss_mix", "epoch_loss_switch", "epoch_lambda",
                "epoch_learning_rate", "epoch_knn_top1"):
        assert tag in tags, (tag, sorted(tags))
    assert [e.step for e in scalars.Tensors("epoch_loss")] == [0, 1]
    images = event_accumulator.EventAccumulator(os.path.join(model_dir, "tensorboard", "images"),
                                                size_guidance={"tensors": 0})
    images.Reload()
    assert {"clean_views", "mixed_views"} <= set(images.Tags()["tensors"])
    for name in ("masks.png", "curves.png"):
        with open(os.path.join(model_dir, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


DATASET_ERRORS = [
    (["--dataset=folder"], "--dataset=folder needs --data_dir"),
    (["--dataset=folder", "--data_dir=/tmp"], "needs --image_size"),
    (["--dataset=folder", "--data_dir=/nonexistent/photos", "--image_size=32"], "does not exist"),
    (["--dataset=synthetic", "--channels=2"], "--channels must be 1 or 3"),
    (["--dataset=synthetic", "--max_image_pixels=0"], "--max_image_pixels must be a positive number of pixels"),
    (["--dataset=no_such_dataset_xyz"], "not a tfds dataset name"),
    (["--dataset=cifar100", "--data_dir={tmp}"], "--download"),
    (["--augment=nope"], "--augment"),
]


@pytest.fixture(scope="module")
def dataset_error_results(tmp_path_factory):
    """Every DATASET_ERRORS case through the command's `main`, in one interpreter
    (conftest.run_pretrain_cases); {tmp} is an empty folder of the case's own."""
    cases = []
    for i, (args, _) in enumerate(DATASET_ERRORS):
        folder = tmp_path_factory.mktemp(f"dataset_error{i}")
        cases.append([a.replace("{tmp}", str(folder)) for a in args] + [f"--model_dir={folder / 'run'}"])
    return run_pretrain_cases(cases, timeout=300)


@pytest.mark.parametrize("case", range(len(DATASET_ERRORS)), ids=[" ".join(args) for args, _ in DATASET_ERRORS])
def test_dataset_flag_errors_are_one_clear_line(dataset_error_results, case):
    message, done = DATASET_ERRORS[case][1], dataset_error_results[case]
    assert done.returncode != 0
    assert message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
