"""The evaluation commands on a real (tiny) pretraining run, checked against independent computations.

One 2-epoch run on 512 Fashion-MNIST images is evaluated by `trainers.knn_eval` (run, checkpoint
and export), `trainers.linear_eval` and `trainers.finetune`; each reported number is recomputed
here from the saved artefacts with NumPy.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_module, run_pretrain
from np_reference import np_softmax_regression
from mixmask_tf import backbones, data, finetune  # noqa: F401  (backbones registers the BatchNorm layer for load_model)

# Every case evaluates one 2-epoch pretraining run (the run_dir fixture): the slow tier.
pytestmark = pytest.mark.slow

LIMITS = ["--train_limit=512", "--test_limit=256"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("eval") / "run")
    result = run_pretrain("--flagfile=configs/smoke.cfg", f"--model_dir={model_dir}", *LIMITS, "--epochs=2",
                          "--knn_k=20", "--batch_size=128", "--queue_size=256", "--width=4", "--plots=false",
                          "--tensorboard=false", "--random_init_knn=false")
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


def _images(split, limit):
    return data.load_fashion_mnist(split, limit=limit)


def _np_features(model_dir, images):
    """Backbone features computed directly from backbone.keras and config.json (no mixmask_tf.encoders)."""
    config = json.load(open(os.path.join(model_dir, "config.json")))
    backbone = keras.models.load_model(os.path.join(model_dir, "backbone.keras"), compile=False)
    x = (images.astype(np.float32) / 255.0 - np.array(config["mean"], np.float32)) / np.array(config["std"], np.float32)
    return np.asarray(backbone.predict(x, batch_size=256, verbose=0), np.float64)


def _np_knn_top1(bank, bank_labels, query, labels, k, t, classes=10):
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    sim = query @ bank.T
    top = np.argsort(-sim, axis=1)[:, :k]
    scores = np.zeros((len(query), classes))
    for i in range(len(query)):
        np.add.at(scores[i], bank_labels[top[i]], np.exp(sim[i, top[i]] / t))
    return np.mean(scores.argmax(1) == labels) * 100


def _run(module, *args):
    result = run_module(module, *args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_knn_eval_run_checkpoint_and_export_agree_with_numpy(run_dir):
    out = _run("trainers.knn_eval", f"--encoder={run_dir}", *LIMITS, "--k=20")
    assert "kNN (k=20, T=0.1) on fashion_mnist test: top-1" in out
    result = json.load(open(os.path.join(run_dir, "eval", "knn.json")))
    (x_train, y_train), (x_test, y_test) = _images("train", 512), _images("test", 256)
    expected = _np_knn_top1(_np_features(run_dir, x_train), y_train, _np_features(run_dir, x_test), y_test, 20, 0.1)
    assert abs(result["knn_top1"] - expected) <= 100 / 256 + 1e-9  # at most one near-tie vote apart
    # The pretraining run's own monitor measured the same thing after its last epoch.
    assert abs(result["knn_top1"] - json.load(open(os.path.join(run_dir, "results.json")))["knn_top1"]) <= 100 / 256
    # The exported SavedModel (what is served) gives the same number; so does the last checkpoint,
    # and the first checkpoint gives what the monitor logged after epoch 1.
    exported = os.path.join(run_dir, "export")
    _run("trainers.knn_eval", f"--encoder={exported}", *LIMITS, "--k=20", f"--output={run_dir}/knn_export.json")
    assert json.load(open(os.path.join(run_dir, "knn_export.json")))["knn_top1"] == pytest.approx(
        result["knn_top1"], abs=100 / 256)
    first = os.path.basename(tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints"))
                             .all_model_checkpoint_paths[0])  # ckpt-<steps of epoch 1>
    _run("trainers.knn_eval", f"--encoder={run_dir}", f"--checkpoint={first}", *LIMITS, "--k=20")
    epoch1 = json.load(open(os.path.join(run_dir, "eval", f"knn-{first}.json")))
    logged = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    assert epoch1["encoder"]["epochs"] == 1
    assert epoch1["knn_top1"] == pytest.approx(logged[0]["knn_top1"], abs=100 / 256)


def test_knn_of_the_head_output_monitor_and_knn_eval_agree(tmp_path):
    """--knn_feature=head on pretrain and --feature=head on knn_eval: the 32-d MoCo head output (the
    smoke config's embedding), scored by the monitor in memory and by knn_eval from the checkpoint."""
    model_dir = str(tmp_path / "run")
    result = run_pretrain("--flagfile=configs/smoke.cfg", f"--model_dir={model_dir}", *LIMITS, "--epochs=1",
                          "--knn_k=20", "--batch_size=128", "--queue_size=256", "--width=4", "--plots=false",
                          "--tensorboard=false", "--export=false", "--knn_feature=head")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(kNN of the head output)" in result.stdout
    results = json.load(open(os.path.join(model_dir, "results.json")))
    assert results["knn_feature"] == results["knn_feature_random_init"] == "head"
    rows = [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    assert [r["knn_feature"] for r in rows] == ["head"]
    out = _run("trainers.knn_eval", f"--encoder={model_dir}", *LIMITS, "--k=20", "--feature=head")
    assert "features 32 of the head output" in out and "of the head output  [" in out
    evaluated = json.load(open(os.path.join(model_dir, "eval", "knn-head.json")))
    assert evaluated["knn_feature"] == evaluated["encoder"]["feature"] == "head"
    assert evaluated["encoder"]["epochs"] == 1
    assert abs(evaluated["knn_top1"] - results["knn_top1"]) <= 100 / 256  # at most one near-tie vote apart
    # The backbone's numbers stay in their own file, and say so.
    _run("trainers.knn_eval", f"--encoder={model_dir}", *LIMITS, "--k=20")
    assert json.load(open(os.path.join(model_dir, "eval", "knn.json")))["knn_feature"] == "backbone"
    # The random-init control of the head: the same backbone + head at random init.
    _run("trainers.knn_eval", f"--encoder={model_dir}", *LIMITS, "--k=20", "--feature=head", "--control=random_init")
    control = json.load(open(os.path.join(model_dir, "eval", "knn-random_init-head.json")))
    assert control["knn_feature"] == "head" and control["control"] == "random_init"


def test_linear_eval_matches_numpy_replay(run_dir):
    from mixmask_tf import linear_probe

    out = _run("trainers.linear_eval", f"--encoder={run_dir}/export", *LIMITS, "--epochs=4", "--seed=2",
               f"--output={run_dir}/linear.json")
    assert "linear probe (fast) on fashion_mnist test: top-1" in out
    result = json.load(open(os.path.join(run_dir, "linear.json")))
    (x_train, y_train), (x_test, y_test) = _images("train", 512), _images("test", 256)
    f_train, f_test = _np_features(run_dir, x_train), _np_features(run_dir, x_test)
    config = linear_probe.protocol("fast", epochs=4)
    w, b, _ = np_softmax_regression(f_train, y_train, 10, config, seed=2)
    logits = (f_test - f_train.mean(0)) / np.maximum(f_train.std(0), 1e-6) @ w + b
    assert result["linear_top1"] == pytest.approx(np.mean(logits.argmax(1) == y_test) * 100, abs=100 / 256)
    top5 = np.mean([y_test[i] in np.argsort(-logits[i])[:5] for i in range(len(y_test))]) * 100
    assert result["linear_top5"] == pytest.approx(top5, abs=100 / 256)
    assert result["config"]["epochs"] == 4 and result["config"]["augment"] is False


def test_finetune_subset_and_accuracy(run_dir):
    saved = os.path.join(run_dir, "finetuned.keras")
    out = _run("trainers.finetune", f"--encoder={run_dir}", *LIMITS, "--label_fraction=0.1", "--epochs=2",
               "--batch_size=32", f"--save_model={saved}")
    assert "fine-tuned on 10% of the labels" in out
    result = json.load(open(os.path.join(run_dir, "eval", "finetune-10pct.json")))
    (_, y_train), (x_test, y_test) = _images("train", 512), _images("test", 256)
    subset = finetune.balanced_subset(y_train, 0.1, seed=0)
    from trainers.eval_common import fingerprint

    assert result["subset_fingerprint"] == fingerprint(subset.tolist())
    assert result["subset_size"] == len(subset) == sum(max(1, round(0.1 * n)) for n in np.bincount(y_train))
    assert result["classifier_lr"] == 0.1 and result["backbone_lr"] == 0.001
    # The saved classifier reproduces the reported accuracy.
    config = json.load(open(os.path.join(run_dir, "config.json")))
    model = keras.models.load_model(saved, compile=False)
    x = (x_test / 255.0 - np.array(config["mean"])) / np.array(config["std"])
    logits = np.asarray(model.predict(x.astype(np.float32), verbose=0))
    assert result["finetune_top1"] == pytest.approx(np.mean(logits.argmax(1) == y_test) * 100, abs=100 / 256)
    # Two replicas (2 logical CPUs) on the same global batch: the step is the one-device step
    # (tests/mixmask_tf/test_finetune.py); the classifier head starts from another draw under a
    # strategy scope, so the numbers are close, not equal.
    out = _run("trainers.finetune", f"--encoder={run_dir}", *LIMITS, "--label_fraction=0.1", "--epochs=2",
               "--batch_size=32", "--strategy=mirrored", "--cpu_devices=2", f"--output={run_dir}/ft_mirrored.json")
    assert "2 replicas (MirroredStrategy)" in out
    mirrored = json.load(open(os.path.join(run_dir, "ft_mirrored.json")))
    assert mirrored["final_train_loss"] == pytest.approx(result["final_train_loss"], rel=0.25)
    assert mirrored["finetune_top1"] == pytest.approx(result["finetune_top1"], abs=15)


@pytest.mark.parametrize("module,args,message", [
    ("trainers.knn_eval", ["--encoder=/nonexistent"], "does not exist"),
    ("trainers.linear_eval", ["--encoder={run}", "--image_size=32"], "encoder takes 28x28"),
    ("trainers.knn_eval", ["--encoder={run}", "--checkpoint=ckpt-99999"], "not found"),
    ("trainers.knn_eval", ["--encoder={run}/export", "--feature=head"], "--feature=head: "),
    ("trainers.knn_eval", ["--encoder={run}/backbone.keras", "--feature=head"], "holds no projection head"),
    ("trainers.knn_eval", ["--encoder={run}", "--feature=head", "--control=raw_pixels"],
     "--feature=head: the raw_pixels control has no head"),
])
def test_errors_are_one_line(run_dir, module, args, message):
    result = run_module(module, *[a.format(run=run_dir) for a in args])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
