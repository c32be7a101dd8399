"""Every flagfile under configs/ parses and validates; the paper configs carry their command and the
paper's number; each smoke variant runs exactly the command its header states.

configs/paper/ holds one flagfile per setting of the MixMask paper's Table 8 (CIFAR-100 and
Tiny-ImageNet x MoCo / SimCLR / BYOL / SimSiam x plain / MixMask / MixMask*) and its ImageNet-1K
MoCo V2 setting, the MSCN paper's ImageNet-1K settings and the saliency-guided masking paper's
ImageNet-100 MoCo v2 settings (one per fill), built from shared settings in configs/paper/base/ by
nested --flagfile lines (resolved relative to the repository root, where the commands run).
configs/paper/smoke/ holds one smoke variant per family: the full config, then overrides that make
it run here in under a minute on synthetic images.
"""

import glob
import json
import math
import os
import re
import resource
import shlex
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT

PAPER_DIR = os.path.join("configs", "paper")
ALL_CONFIGS = sorted(os.path.relpath(p, REPO_ROOT)
                     for p in glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.cfg"), recursive=True))
SETTING_CONFIGS = sorted(p for p in ALL_CONFIGS if os.path.dirname(p) == PAPER_DIR)
SMOKE_CONFIGS = sorted(p for p in ALL_CONFIGS if os.path.dirname(p) == os.path.join(PAPER_DIR, "smoke"))
# A smoke run must cost under SMOKE_CPU_BUDGET seconds of CPU (user + sys of the run). They take
# about 40-50 s of CPU and as much wall time alone on the 2-core CPU, 35-65 s wall two at a time
# (`pytest -n 2`); the budget is on CPU time because wall time also counts whatever else the machine
# runs (a concurrent training run pushed them past 90 s wall). SMOKE_TIMEOUT only stops a hung run.
SMOKE_CPU_BUDGET = float(os.environ.get("MIXMASK_SMOKE_CPU_BUDGET", "90"))
SMOKE_TIMEOUT = float(os.environ.get("MIXMASK_SMOKE_TIMEOUT", "300"))

BRANCHES = ("none", "mixmask", "mixmask_unmix")
FRAMEWORKS = ("moco", "simclr", "byol", "simsiam")
EXPECTED_SETTINGS = sorted(
    [f"{ds}_{fw}_{b}" for ds in ("cifar100", "tiny_imagenet") for fw in FRAMEWORKS for b in BRANCHES]
    + [f"imagenet_mocov2_{b}" for b in BRANCHES] + ["imagenet_simclr_mscn", "imagenet_byol_mscn"]
    + [f"imagenet100_mocov2_saliency_{fill}" for fill in ("highpass", "blur", "mean")])
EXPECTED_SMOKE = ["cifar100_byol", "cifar100_moco", "cifar100_simclr", "cifar100_simsiam",
                  "imagenet100_mocov2_saliency", "imagenet_byol_mscn", "imagenet_mocov2", "imagenet_simclr_mscn",
                  "tiny_imagenet_moco"]

# The paper's Table 8 (CIFAR-100 / Tiny-ImageNet, ResNet-18, 1000 epochs, batch 512) and its
# ImageNet-1K MoCo V2 setting, as the CLI's flags. Grid sizes: section 4.1 (2 / 4 / 8) and the Table 5
# caption (CIFAR-100: 2 for MoCo, 4 for the other frameworks).
_SMALL = {"backbone": "resnet18_cifar", "epochs": 1000, "batch_size": 512, "unmix_prob": 0.5,
          "mask_type": "blocked", "mask_ratio": 0.5}
TABLE8 = {
    "moco": {**_SMALL, "framework": "mocov1", "optimizer": "sgd", "learning_rate": 0.06, "sgd_momentum": 0.9,
             "weight_decay": 5e-4, "embedding_dim": 128, "moco_momentum": 0.99, "queue_size": 4096,
             "temperature": 0.1},
    "simclr": {**_SMALL, "framework": "simclr", "optimizer": "adam", "projector_layers": 2, "hidden_dim": 1024},
    "byol": {**_SMALL, "framework": "byol", "optimizer": "adam", "hidden_dim": 1024, "tau": 0.99},
    "simsiam": {**_SMALL, "framework": "simsiam", "optimizer": "sgd", "learning_rate": 0.03, "sgd_momentum": 0.9,
                "weight_decay": 5e-4, "embedding_dim": 128, "warmup_epochs": 10, "projector_layers": 2},
    "mocov2": {"backbone": "resnet50", "framework": "mocov2", "epochs": 200, "batch_size": 256, "optimizer": "sgd",
               "learning_rate": 0.03, "weight_decay": 1e-4, "queue_size": 65536, "moco_momentum": 0.999,
               "temperature": 0.2, "embedding_dim": 128, "hidden_dim": 2048, "augment": "mocov2", "grid_size": 8,
               "unmix_prob": 0.5, "mask_type": "blocked", "mask_ratio": 0.5, "dataset": "imagenet2012",
               "test_split": "validation", "image_size": 224},
}
# The MSCN paper's appendix A.1 (ImageNet-1K, ResNet-50, LARS, batch 4096, 10 warm-up epochs).
_MSCN = {"backbone": "resnet50", "dataset": "imagenet2012", "test_split": "validation", "image_size": 224,
         "eval_crop_ratio": 0.875, "optimizer": "lars", "batch_size": 4096, "warmup_epochs": 10,
         "embedding_dim": 256, "augment": "simclr", "mscn_ratio": 0.15, "mscn_grid_size": 7,
         "mscn_focal_prob": 0.4, "mscn_extra_views": 2, "highpass": True}
MSCN_A1 = {
    "imagenet_simclr": {**_MSCN, "framework": "simclr", "learning_rate": 4.8, "epochs": 800, "hidden_dim": 2048,
                        "projector_layers": 2, "temperature": 0.2},
    "imagenet_byol": {**_MSCN, "framework": "byol", "learning_rate": 3.2, "epochs": 1000, "hidden_dim": 4096,
                      "tau": 0.996, "tau_schedule": "cosine"},
}
# The saliency-guided masking paper's supplementary (ImageNet-100, ResNet-50, MoCo v2, 200 epochs, batch 128,
# base lr 0.015, SGD, alpha 2) and the authors' main_moco.py / README command (K 65536, m 0.999, T 0.2, MLP head,
# aug-plus, cosine, weight decay 1e-4, one hard negative); the localisation network is the paper's ImageNet
# ResNet-50. The fill is the name's suffix (highpass, blur, mean).
SALIENCY_SUPP = {
    "imagenet100_mocov2": {"backbone": "resnet50", "framework": "mocov2", "dataset": "folder", "image_size": 224,
                           "test_split": "val", "eval_crop_ratio": 0.875, "epochs": 200, "batch_size": 128,
                           "optimizer": "sgd", "learning_rate": 0.015, "sgd_momentum": 0.9, "weight_decay": 1e-4,
                           "weight_decay_style": "l2", "warmup_epochs": 0, "scale_learning_rate": False,
                           "queue_size": 65536, "moco_momentum": 0.999, "temperature": 0.2, "embedding_dim": 128,
                           "hidden_dim": 2048, "symmetric": False, "augment": "mocov2", "branch": "saliency",
                           "saliency_alpha": 2.0, "saliency_hard_negatives": 1, "saliency_std_factor": 0.6,
                           "saliency_model": "resnet50_imagenet", "knn_every": 0},
}
SALIENCY_FILLS = {"highpass": {"highpass_sigma": 5.0, "highpass_radius": 5, "saliency_noise_std": 0.18,
                               "saliency_negative_noise_std": 0.14},
                  "blur": {}, "mean": {}}
PER_DATASET = {  # SimCLR & BYOL: "0.003, 0.002" and "64, 128" = CIFAR-100, Tiny-ImageNet.
    "cifar100": {"dataset": "cifar100", "adam_lr": 0.003, "adam_emb": 64},
    "tiny_imagenet": {"dataset": "folder", "image_size": 64, "test_split": "val", "adam_lr": 0.002,
                      "adam_emb": 128},
}

# Parses every config in a fresh interpreter (absl's FLAGS are process-global) and reports the
# effective flags or the error for each.
_PARSE_SCRIPT = r"""
import json, sys
sys.argv = ["pretrain"]
import trainers.pretrain as pretrain
from mixmask_tf import augment
FLAGS = pretrain.FLAGS
out = {}
for path in json.loads(sys.stdin.read()):
    try:
        FLAGS(["pretrain", "--flagfile=" + path, "--model_dir=/tmp/unused_model_dir"])
        pretrain.validate_flags()
        if FLAGS.augment not in augment.PRESETS:
            raise ValueError(f"unknown --augment {FLAGS.augment!r}")
        pretrain.branch_flags.build_branch()  # the branch options are valid (grid, ratio, probabilities)
        out[path] = {"flags": {name: FLAGS[name].value for name in FLAGS
                               if isinstance(FLAGS[name].value, (str, int, float, bool, type(None)))}}
    except BaseException as e:  # absl's errors, UserError, SystemExit, ...
        out[path] = {"error": f"{type(e).__name__}: {e}"}
    finally:
        FLAGS.unparse_flags()
print("CONFIGS_JSON " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def parsed():
    """{config path: {"flags": {name: value}} or {"error": message}} for every config."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", _PARSE_SCRIPT], input=json.dumps(ALL_CONFIGS), cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("CONFIGS_JSON ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("CONFIGS_JSON "):])


def _flags(parsed, path):
    entry = parsed[path]
    assert "error" not in entry, f"{path}: {entry.get('error')}"
    return entry["flags"]


def _header(path):
    """The leading comment block of a flagfile, one string per line."""
    lines = []
    with open(os.path.join(REPO_ROOT, path)) as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line.rstrip("\n"))
    return lines


def _command(path):
    """The argv of the '# Command:' line of a config's header."""
    commands = [line for line in _header(path) if line.startswith("# Command:")]
    assert len(commands) == 1, f"{path}: expected one '# Command:' line in the header, got {len(commands)}"
    return shlex.split(commands[0][len("# Command:"):])


def test_paper_config_set_is_complete():
    names = [os.path.basename(p)[:-4] for p in SETTING_CONFIGS]
    assert names == EXPECTED_SETTINGS
    assert [os.path.basename(p)[:-4] for p in SMOKE_CONFIGS] == EXPECTED_SMOKE


@pytest.mark.parametrize("path", ALL_CONFIGS)
def test_config_parses_and_validates(parsed, path):
    flags = _flags(parsed, path)
    assert flags["model_dir"] == "/tmp/unused_model_dir"


@pytest.mark.parametrize("path", SETTING_CONFIGS + SMOKE_CONFIGS)
def test_header_names_its_own_command(path):
    argv = _command(path)
    assert argv[:3] == ["python", "-m", "trainers.pretrain"], argv
    assert f"--flagfile={path}" in argv, f"{path}: the command does not run this file: {argv}"
    assert any(a.startswith("--model_dir=") for a in argv), argv
    assert len(argv) == 5, f"{path}: the command should be exactly the flagfile and a --model_dir: {argv}"


@pytest.mark.parametrize("path", SETTING_CONFIGS)
def test_header_quotes_the_paper(path):
    header = _header(path)
    start = [i for i, line in enumerate(header) if line.startswith("# Paper result:")]
    assert len(start) == 1, f"{path}: expected one '# Paper result:' line"
    # The result line and its indented continuation lines.
    block = [header[start[0]]]
    for line in header[start[0] + 1:]:
        if not line.startswith("#   "):
            break
        block.append(line)
    text = " ".join(block)
    if "not reported" in text:
        assert not re.search(r"\d+\.\d\d", text.split("not reported")[0]), text
        return
    assert re.search(r"Table \d+", text), f"{path}: the result names no table: {text}"
    assert re.search(r"\b\d{2}\.\d{2}\b", text), f"{path}: the result quotes no number: {text}"
    assert "kNN" in text or "linear" in text, f"{path}: the result does not say which metric: {text}"


@pytest.mark.parametrize("path", SETTING_CONFIGS)
def test_setting_matches_paper_table(parsed, path):
    """The effective flags of each setting are its paper's (Table 8 / ImageNet-1K / MSCN A.1 / the saliency
    paper's ImageNet-100 MoCo v2) for its family."""
    flags = _flags(parsed, path)
    name = os.path.basename(path)[:-4]
    if "_saliency_" in name:
        family, fill = name.split("_saliency_")
        expected = {**SALIENCY_SUPP[family], "saliency_fill": fill, **SALIENCY_FILLS[fill]}
        for key, value in expected.items():
            assert flags[key] == value, f"{path}: --{key}={flags[key]!r}, the saliency paper's setting is {value!r}"
        return
    branch = next(b for b in ("mixmask_unmix", "mixmask", "none", "mscn") if name.endswith("_" + b))
    family = name[:-len(branch) - 1]
    dataset, framework = family.rsplit("_", 1)
    assert flags["branch"] == branch
    if family in MSCN_A1:
        for key, value in MSCN_A1[family].items():
            assert flags[key] == value, f"{path}: --{key}={flags[key]!r}, the MSCN paper's setting is {value!r}"
        return
    expected = dict(TABLE8[framework])
    if framework != "mocov2":
        extra = PER_DATASET[dataset]
        expected.update({k: v for k, v in extra.items() if not k.startswith("adam_")})
        if framework in ("simclr", "byol"):
            expected.update(learning_rate=extra["adam_lr"], embedding_dim=extra["adam_emb"])
        expected["grid_size"] = 2 if (dataset, framework) == ("cifar100", "moco") else 4
    for key, value in expected.items():
        assert flags[key] == value, f"{path}: --{key}={flags[key]!r}, the paper's setting is {value!r}"


@pytest.mark.parametrize("path", SETTING_CONFIGS)
def test_knn_feature_is_the_reference_monitors(parsed, path):
    """MoCo on CIFAR-100 / Tiny-ImageNet: the kNN scores the head output, as the MoCo CIFAR demo and
    Un-Mix's CIFAR code do (the paper's numbers build on them); the others the backbone
    (configs/paper/README.md)."""
    name = os.path.basename(path)
    expected = "head" if name.startswith(("cifar100_moco_", "tiny_imagenet_moco_")) else "backbone"
    assert _flags(parsed, path)["knn_feature"] == expected


@pytest.mark.parametrize("path", SMOKE_CONFIGS)
def test_smoke_header_says_plumbing_only(path):
    text = " ".join(line.lstrip("#").strip() for line in _header(path))
    assert "plumbing only" in text and "NOT a result" in text


@pytest.mark.parametrize("path", SMOKE_CONFIGS)
def test_smoke_config_keeps_its_family(parsed, path):
    """A smoke variant nests one paper setting and keeps its framework, branch, optimizer and masks."""
    with open(os.path.join(REPO_ROOT, path)) as f:
        nested = [line.strip()[len("--flagfile="):] for line in f if line.startswith("--flagfile=")]
    assert len(nested) == 1 and nested[0] in SETTING_CONFIGS, nested
    smoke, full = _flags(parsed, path), _flags(parsed, nested[0])
    for key in ("framework", "branch", "optimizer", "learning_rate", "weight_decay", "augment", "grid_size",
                "mask_type", "mask_ratio", "unmix_prob", "embedding_dim", "temperature", "moco_momentum", "tau",
                "knn_feature"):
        assert smoke[key] == full[key], f"{path}: --{key} {smoke[key]!r} differs from {nested[0]}'s {full[key]!r}"
    assert smoke["dataset"] == "synthetic" and smoke["export"] is False


def _run_smoke(path, tmp_path):
    argv = _command(path)
    model_dir = str(tmp_path / "run")
    argv = [sys.executable if a == "python" else (f"--model_dir={model_dir}" if a.startswith("--model_dir=") else a)
            for a in argv]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, model_dir, time.time() - start, cpu


@pytest.mark.slow
@pytest.mark.parametrize("path", SMOKE_CONFIGS)
def test_smoke_variant_runs_its_command(path, tmp_path):
    proc, model_dir, seconds, cpu = _run_smoke(path, tmp_path)
    assert proc.returncode == 0, f"{path} failed after {seconds:.0f}s:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    print(f"{path}: {seconds:.1f}s wall, {cpu:.1f}s CPU")
    assert cpu < SMOKE_CPU_BUDGET, f"{path}: the smoke run used {cpu:.0f}s of CPU ({seconds:.0f}s wall)"
    with open(os.path.join(model_dir, "flags.cfg")) as f:
        effective = dict(line.strip()[2:].split("=", 1) for line in f if line.startswith("--") and "=" in line)
    epochs = int(effective["epochs"])
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    branch = effective["branch"]
    for row in rows:
        assert math.isfinite(row["loss"]), row
        assert math.isfinite(row["loss_clean"]), row
        if branch in ("mixmask", "mixmask_unmix"):  # the MixMask terms ran, with a real mask
            assert math.isfinite(row["loss_mix"]) and math.isfinite(row["loss_switch"]), row
            assert 0.2 <= row["lambda"] <= 0.8, row
        if branch == "mixmask_unmix":
            assert math.isfinite(row["loss_unmix"]) and 0.0 <= row["lambda_unmix"] <= 1.0, row
        if branch == "mscn":  # both sides masked, about the 0.15 of the defaults (focal masks add some)
            assert 0.05 <= row["mask_ratio_query"] <= 0.4 and 0.05 <= row["mask_ratio_key"] <= 0.4, row
        if branch == "saliency":  # the query was masked, a foreground found, the hard negative scored
            assert math.isfinite(row["hard_negative_logit"]), row
            assert 0.0 < row["fg_ratio"] <= 1.0 and 0.0 < row["mask_ratio"] < 1.0, row
    with open(os.path.join(model_dir, "results.json")) as f:
        results = json.load(f)
    assert 0.0 <= results["knn_top1"] <= 100.0 and results["epochs_completed"] == epochs
    assert results["knn_feature"] == effective["knn_feature"]  # what the kNN scored (head for MoCo CIFAR/Tiny)
    import tensorflow as tf

    from mixmask_tf import checkpoint

    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert latest and checkpoint.read_checkpoint(latest)[2:] == (epochs, 0)
    assert not os.path.exists(os.path.join(model_dir, "export"))
