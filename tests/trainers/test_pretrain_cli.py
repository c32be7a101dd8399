"""The pretrain CLI as a user runs it: the smoke config, resume, and clear errors for bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, run_pretrain as _run, run_pretrain_cases

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist"),
                                reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")


@pytest.mark.slow
def test_smoke_config_trains_resumes_and_exports(tmp_path):
    model_dir = str(tmp_path / "run")
    # In device mode (the views finished inside the step), both commands.
    first = _run("--flagfile=configs/smoke.cfg", f"--model_dir={model_dir}", "--epochs=1", "--export=false",
                 "--augment_on=device")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "random init: kNN top-1" in first.stdout
    assert "augmentation: crops on the host (uint8), the rest inside the train step" in first.stdout
    assert os.path.exists(os.path.join(model_dir, "checkpoints", "checkpoint"))
    assert os.path.exists(os.path.join(model_dir, "backbone.keras"))
    flags_text = open(os.path.join(model_dir, "flags.cfg")).read()
    assert "--grid_size=4" in flags_text and "--branch=mixmask" in flags_text
    # Same command with more epochs resumes from the checkpoint instead of starting again.
    second = _run("--flagfile=configs/smoke.cfg", f"--model_dir={model_dir}", "--epochs=2", "--augment_on=device")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout and "(epoch 1, step " in second.stdout
    assert "random init" not in second.stdout.split("resumed from")[1].split("kNN top-1 on")[0]
    rows = [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert 0.3 < row["lambda"] < 0.7 and row["loss"] > 0 and "knn_top1" in row
    results = json.load(open(os.path.join(model_dir, "results.json")))
    assert 0 < results["knn_top1"] <= 100 and 0 < results["knn_top1_random_init"] <= 100
    assert results["epochs_completed"] == 2
    card = json.load(open(os.path.join(model_dir, "export", "1", "assets.extra", "export.json")))
    assert card["framework"] == "mocov2" and card["branch"]["name"] == "mixmask" and card["epochs"] == 2
    assert card["input"]["shape"] == [None, 28, 28, 1]
    # The standalone exporter writes the next version.
    exported = subprocess.run([sys.executable, "-m", "export.saved_model", f"--model_dir={model_dir}"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert os.path.exists(os.path.join(model_dir, "export", "2", "saved_model.pb"))


BAD_INPUT = [
    (["--data_dir=/nonexistent/fashion"], "apt-get install dataset-fashion-mnist"),
    (["--grid_size=64"], "larger than"),
    (["--grid_size=1"], "grid"),
    (["--mask_ratio=1.5"], "ratio"),
    (["--mask_ratio=0"], "ratio"),
    (["--queue_size=64"], "--queue_size (64) must be >= --batch_size (128)"),
    (["--crop_scale=0.5"], "--crop_scale takes 'a,b' with 0 < a <= b <= 1, got 0.5"),
    (["--crop_scale=0.8,0.2"], "--crop_scale takes 'a,b'"),
    (["--crop_scale=a,1"], "--crop_scale: could not convert"),
    (["--data_service=127.0.0.1:5050"],
     "--data_service must be a tf.data service dispatcher's address, grpc://host:port"),
    (["--data_service=grpc://127.0.0.1:5050", "--strategy=multi_worker"],
     "--data_service feeds one trainer process; it does not go with --strategy=multi_worker"),
]


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory):
    """Every BAD_INPUT case through the command's `main`, in one interpreter (conftest.run_pretrain_cases)."""
    base = tmp_path_factory.mktemp("bad_input")
    return run_pretrain_cases([["--flagfile=configs/smoke.cfg", f"--model_dir={base / str(i)}", *args]
                               for i, (args, _) in enumerate(BAD_INPUT)])


@pytest.mark.parametrize("case", range(len(BAD_INPUT)), ids=[" ".join(args) for args, _ in BAD_INPUT])
def test_bad_input_gives_clear_error(bad_input_results, case):
    message = BAD_INPUT[case][1]
    result = bad_input_results[case]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flag, message", [
    ("--no_such_flag=3", "FATAL Flags parsing error: Unknown command line flag 'no_such_flag'"),
    ("--mask_type=checkerboard",
     "FATAL Flags parsing error: flag --mask_type=checkerboard: value should be one of <blocked|discrete>"),
], ids=["unknown_flag", "bad_enum"])
def test_unknown_flag_and_bad_enum(tmp_path, flag, message):
    result = _run("--flagfile=configs/smoke.cfg", f"--model_dir={tmp_path}", flag)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert message in result.stderr.splitlines()


@pytest.mark.slow
@pytest.mark.parametrize("framework, branch, extra", [
    ("mocov1", "erase", ["--erase_fill=noise", "--temperature=0.07"]),
    ("mocov2", "none", ["--symmetric", "--queue_size=512", "--optimizer=lars", "--learning_rate=1.0"]),
    ("simclr", "unmix", ["--optimizer=adam", "--learning_rate=0.003", "--unmix_prob=0.5",
                         "--mixed_precision=mixed_bfloat16", "--augment_on=device"]),
    ("byol", "mixmask_unmix", ["--optimizer=adam", "--learning_rate=0.003", "--tau_schedule=cosine"]),
    ("simsiam", "mixmask", ["--learning_rate=0.03", "--per_sample_mask", "--permutation=random",
                            "--crop_scale=0.5,1", "--augment_on=device", "--jit_compile"]),
])
def test_every_framework_from_the_cli(tmp_path, framework, branch, extra):
    result = _run("--flagfile=configs/smoke.cfg", f"--model_dir={tmp_path}", f"--framework={framework}",
                  f"--branch={branch}", "--train_limit=512", "--test_limit=256", "--epochs=1", "--export=false",
                  "--random_init_knn=false", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    if "--augment_on=device" in extra:  # and the montage shows the views as the step finishes them
        assert "augmentation: crops on the host (uint8), the rest inside the train step\n" in result.stdout
        assert os.path.getsize(os.path.join(tmp_path, "masks.png")) > 0
    else:  # auto on a CPU
        assert "augmentation: on the host, in tf.data (--augment_on=auto)\n" in result.stdout
    row = json.loads(open(os.path.join(tmp_path, "metrics.jsonl")).readline())
    terms = {"none": [], "erase": ["erase", "erase_complement"], "unmix": ["unmix", "unmix_switch"],
             "mixmask": ["mix", "switch"], "mixmask_unmix": ["mix", "switch", "unmix", "unmix_switch"]}[branch]
    assert all(f"loss_{t}" in row for t in terms) and np.isfinite(row["loss"])
    config = json.load(open(os.path.join(tmp_path, "config.json")))
    assert config["framework"] == framework and config["branch"]["name"] == branch
    crop = [0.5, 1.0] if "--crop_scale=0.5,1" in extra else [0.2, 1.0]  # else the fashion_mnist preset's
    assert config["augment"]["view1"]["crop_scale"] == config["augment"]["view2"]["crop_scale"] == crop


def test_symmetric_outside_moco_is_an_error(tmp_path):
    result = _run("--flagfile=configs/smoke.cfg", f"--model_dir={tmp_path}", "--framework=simclr", "--symmetric")
    assert result.returncode == 2 and "--symmetric applies to MoCo only" in result.stderr


@pytest.mark.slow
def test_strategy_errors_are_one_clear_line(tmp_path):
    common = ["--dataset=synthetic", "--image_size=16", "--train_limit=64", f"--model_dir={tmp_path}"]
    # The mirrored case first: it splits the CPU into 2 logical devices, which TensorFlow allows only
    # before it initialises them (the cases share one interpreter: conftest.run_pretrain_cases).
    cases = [(["--strategy=mirrored", "--cpu_devices=2", "--batch_size=33"], "does not divide over the 2 replicas"),
             (["--strategy=multi_worker"], "needs TF_CONFIG"),
             (["--strategy=tpu"], "--strategy=tpu: no TPU"),
]
    results = run_pretrain_cases([[*common, *flags_] for flags_, _ in cases])
    for (flags_, message), done in zip(cases, results):
        assert done.returncode == 2 and message in done.stderr, (flags_, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
