"""benchmarks/interleaved.py and benchmarks/matmul_ceiling.py: the FLOP counter against hand counts,
the commands, the parsing of what the two step scripts write, medians and report, and the A B A B
orchestration (with stand-in pythons, so no torch is needed; the torch ceiling runs only where
the torch venv exists)."""

import json
import os
import statistics
import subprocess
import sys
import textwrap

import keras
import pytest
from conftest import REPO_ROOT

from benchmarks import interleaved, matmul_ceiling

TORCH_PYTHON = interleaved.DEFAULT_TORCH_PYTHON
S = interleaved.SETTINGS


# ------------------------------------------------------------------ FLOP counter


def _tiny_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)  # 8x8x4
    x = keras.layers.Conv2D(2, 3, strides=2, padding="valid")(x)  # 3x3x2
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5)(x)
    return keras.Model(inputs, x)


def test_forward_flops_hand_count():
    # conv 1: 8*8 outputs x (3*3*3) x 4 = 6912 MACs; conv 2: 3*3 x (3*3*4) x 2 = 648; dense: 2*5 = 10.
    assert matmul_ceiling.forward_flops(_tiny_model()) == 2 * (6912 + 648 + 10) == 15140


def test_forward_flops_nested_models_and_sequence_dense():
    tiny = _tiny_model()
    inputs = keras.Input((8, 8, 3))
    outer = keras.Model(inputs, keras.layers.Dense(7)(tiny(inputs)))
    assert matmul_ceiling.forward_flops(outer) == 15140 + 2 * 5 * 7
    seq_in = keras.Input((6, 4))  # Dense on [N, 6, 4]: 6 x (4 x 3) MACs
    assert matmul_ceiling.forward_flops(keras.Model(seq_in, keras.layers.Dense(3)(seq_in))) == 2 * 6 * 12


def test_small_convnet_and_resnet18_cifar_flops():
    from mixmask_tf import backbones

    # small ConvNet width 32, 28x28x1: 28*28*9*1*32 + 14*14*9*32*64 + 7*7*9*64*128 + 7*7*9*128*128 MACs.
    small = 28 * 28 * 9 * 32 + 14 * 14 * 9 * 32 * 64 + 7 * 7 * 9 * 64 * 128 + 7 * 7 * 9 * 128 * 128
    backbone, encoder = matmul_ceiling.encoder_forward_flops("small_convnet", (28, 28, 1), width=32)
    assert backbone == 2 * small == 29_352_960
    assert encoder == backbone + 2 * (128 * 128 + 128 * 128)  # MoCo v2 head 128 -> 128 -> 128
    # CIFAR ResNet-18, 32x32x3: stem, stage 1 (4 convs 64->64 at 32x32), stages 2-4 (each 2^27 MACs:
    # the halved resolution and doubled width cancel, 1x1 downsample included).
    stem = 32 * 32 * 27 * 64
    stage1 = 4 * 32 * 32 * 9 * 64 * 64
    stage2 = 16 * 16 * 9 * 64 * 128 + 3 * 16 * 16 * 9 * 128 * 128 + 16 * 16 * 64 * 128
    assert stage2 == 2 ** 27
    macs = stem + stage1 + 3 * stage2
    flops = matmul_ceiling.forward_flops(backbones.build_backbone("resnet18_cifar", (32, 32, 3)))
    assert flops == 2 * macs == 1_110_835_200  # 0.555 G multiply-adds per image


def test_step_flops_forward_equivalents():
    assert matmul_ceiling.STEP_FORWARD_EQUIVALENTS == {"none": 4, "mixmask": 7}
    assert matmul_ceiling.step_flops(10, 128, "none") == 128 * 10 * 4
    assert matmul_ceiling.step_flops(10, 128, "mixmask") == 128 * 10 * 7


# ------------------------------------------------------------------ parsing and commands


def test_parse_per_backbone():
    both = ["small_convnet", "resnet18_cifar"]
    assert interleaved.parse_per_backbone("10", both) == {"small_convnet": 10, "resnet18_cifar": 10}
    assert interleaved.parse_per_backbone("small_convnet=10,resnet18_cifar=4", both) == {
        "small_convnet": 10, "resnet18_cifar": 4}
    assert interleaved.parse_per_backbone("8,resnet18_cifar=4", both) == {"small_convnet": 8, "resnet18_cifar": 4}
    with pytest.raises(ValueError, match="no value"):
        interleaved.parse_per_backbone("resnet18_cifar=4", both)
    with pytest.raises(ValueError, match="not one of"):
        interleaved.parse_per_backbone("resnet50=4", both)


def _flag(argv, name):
    """Value of --name in an argv written as '--name=value' or '--name value'."""
    for i, a in enumerate(argv):
        if a == f"--{name}":
            return argv[i + 1]
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    raise KeyError(name)


def test_both_commands_carry_the_same_settings():
    for backbone in interleaved.BACKBONES:
        tf = interleaved.tf_command("py", S, backbone, 4, 3, "/tmp/a.json")
        pt = interleaved.torch_command("tpy", S, backbone, 4, 3, 2, "/tmp/b.json")
        assert tf[:3] == ["py", "-m", "benchmarks.step_throughput"]
        assert pt[:3] == ["tpy", "-m", "benchmarks.torch_reference"]
        for name in ("backbones", "branches", "width", "small_image_shape", "resnet_image_shape", "batch_size",
                     "queue_size", "grid_size", "steps", "warmup"):
            assert _flag(tf, name) == _flag(pt, name), name
        assert _flag(tf, "backbones") == backbone and _flag(tf, "branches") == "none,mixmask"
        assert (_flag(tf, "batch_size"), _flag(tf, "queue_size"), _flag(tf, "width")) == ("128", "4096", "32")
        assert _flag(tf, "frameworks") == "mocov2" and _flag(tf, "jit") == "false"
        assert _flag(tf, "precision") == "float32" and _flag(tf, "json") == "/tmp/a.json"
        assert _flag(pt, "modes") == "compile" and _flag(pt, "channels_last") == "false"
        assert _flag(pt, "tf_padding") == "false" and _flag(pt, "threads") == "2"
        assert _flag(pt, "json") == "/tmp/b.json"


def _tf_doc(backbone, ms, **row_overrides):
    shape = interleaved.image_shape(S, backbone)
    return {"tensorflow": "2.x", "keras": "3.x", "onednn": "1", "inter_op_threads": "2", "intra_op_threads": "1",
            "device": "CPU", "keras_batchnorm": False,
            "rows": [{"backbone": backbone, "image_shape": shape, "framework": "mocov2", "branch": b, "jit": False,
                      "precision": "float32", "batch_size": 128, "ms_per_step": v, **row_overrides}
                     for b, v in ms.items()]}


def _torch_doc(backbone, ms, args_overrides=None, **row_overrides):
    shape = interleaved.image_shape(S, backbone)
    args = {"queue_size": 4096, "batch_size": 128, "width": 32, "grid_size": 4, "small_image_shape": "28,28,1",
            "resnet_image_shape": "32,32,3", "amp": "none", "device": "cpu", **(args_overrides or {})}
    return {"machine": {"torch": "2.x+cpu", "threads": 2, "interop_threads": 2, "mkldnn": True}, "args": args,
            "rows": [{"backbone": backbone, "image_shape": shape, "branch": b, "mode": "compile",
                      "channels_last": False, "tf_padding": False, "batch_size": 128, "amp": "none",
                      "compiled_autograd": False, "ms_per_step": v, **row_overrides} for b, v in ms.items()]}


def test_step_ms_parsing_and_setting_checks():
    ms = {"none": 150.0, "mixmask": 230.0}
    assert interleaved.tf_step_ms(_tf_doc("small_convnet", ms), "small_convnet", S) == ms
    assert interleaved.torch_step_ms(_torch_doc("resnet18_cifar", ms), "resnet18_cifar", S) == ms
    with pytest.raises(ValueError, match="channels_last"):
        interleaved.torch_step_ms(_torch_doc("small_convnet", ms, channels_last=True), "small_convnet", S)
    with pytest.raises(ValueError, match="queue_size"):
        interleaved.torch_step_ms(_torch_doc("small_convnet", ms, {"queue_size": 65536}), "small_convnet", S)
    with pytest.raises(ValueError, match="mode"):
        interleaved.torch_step_ms(_torch_doc("small_convnet", ms, mode="eager"), "small_convnet", S)
    with pytest.raises(ValueError, match="batch_size"):
        interleaved.tf_step_ms(_tf_doc("small_convnet", ms, batch_size=64), "small_convnet", S)
    with pytest.raises(ValueError, match="image_shape"):
        interleaved.tf_step_ms(_tf_doc("resnet18_cifar", ms, image_shape=[28, 28, 1]), "resnet18_cifar", S)
    with pytest.raises(ValueError, match="branches"):
        interleaved.tf_step_ms(_tf_doc("small_convnet", {"none": 1.0}), "small_convnet", S)
    bn = _tf_doc("small_convnet", ms)
    bn["keras_batchnorm"] = True
    with pytest.raises(ValueError, match="keras_batchnorm"):
        interleaved.tf_step_ms(bn, "small_convnet", S)


# ------------------------------------------------------------------ medians and report

TF_MS = [(100.0, 150.0), (120.0, 160.0), (110.0, 200.0)]
TORCH_MS = [(130.0, 300.0), (120.0, 240.0), (165.0, 260.0)]


def _measurements():
    out = []
    for pair, (tf, pt) in enumerate(zip(TF_MS, TORCH_MS), start=1):
        out.append({"backbone": "small_convnet", "pair": pair, "side": "tf", "ms": dict(zip(interleaved.BRANCHES, tf))})
        out.append({"backbone": "small_convnet", "pair": pair, "side": "torch",
                    "ms": dict(zip(interleaved.BRANCHES, pt))})
    out.append({"backbone": "small_convnet", "pair": 4, "side": "tf", "ms": {"none": 1.0, "mixmask": 1.0}})  # unpaired
    return out


def test_summarize_pairs_and_medians():
    summary = interleaved.summarize(_measurements(), ["small_convnet"], interleaved.BRANCHES)
    none, mix = summary["small_convnet"]["none"], summary["small_convnet"]["mixmask"]
    assert [p["pair"] for p in none["pairs"]] == [1, 2, 3]  # pair 4 has no torch side
    assert [p["ratio"] for p in none["pairs"]] == [1.3, 1.0, 1.5]
    assert none["median_tf_ms"] == 110.0 and none["median_torch_ms"] == 130.0
    assert none["ratio_of_medians"] == pytest.approx(130 / 110)
    assert none["median_ratio"] == 1.3 and (none["min_ratio"], none["max_ratio"]) == (1.0, 1.5)
    assert mix["median_tf_ms"] == 160.0 and mix["median_torch_ms"] == 260.0
    assert mix["median_ratio"] == pytest.approx(statistics.median([2.0, 1.5, 1.3]))
    text = interleaved.format_pairs(summary)
    assert "torch/TF" in text and len(text.splitlines()) == 1 + 2 * (3 + 1)
    assert "small_convnet   none         1     100.0     130.0     1.30x" in text
    assert "med     160.0     260.0     1.62x" in text and "range 1.30-2.00x, 3 pairs" in text


def test_ceiling_fractions():
    summary = interleaved.summarize(_measurements(), ["small_convnet"], interleaved.BRANCHES)
    ceilings = [{"framework": "tf", "gflops": 40.0}, {"framework": "tf", "gflops": 50.0},
                {"framework": "torch", "gflops": 25.0}]
    tf_ceiling, torch_ceiling = interleaved.best_ceiling(ceilings, "tf"), interleaved.best_ceiling(ceilings, "torch")
    assert (tf_ceiling, torch_ceiling) == (50.0, 25.0)
    rows = interleaved.ceiling_fractions(summary, {"small_convnet": 1e7}, 128, tf_ceiling, torch_ceiling)
    none = rows[0]
    assert none["step_gflop"] == pytest.approx(128 * 1e7 * 4 / 1e9)  # 5.12 GFLOP
    assert none["tf_gflops"] == pytest.approx(5.12 / 0.110)
    assert none["tf_fraction_of_tf_ceiling"] == pytest.approx(5.12 / 0.110 / 50)
    assert none["torch_fraction_of_torch_ceiling"] == pytest.approx(5.12 / 0.130 / 25)
    assert rows[1]["step_gflop"] == pytest.approx(128 * 1e7 * 7 / 1e9)
    text = interleaved.format_fractions(rows, tf_ceiling, None)
    assert "tf.matmul 50.0 GFLOP/s, torch.mm not measured" in text


# ------------------------------------------------------------------ orchestration


FAKE_PYTHON = """\
#!{python}
# Stands in for both venvs' python: writes what the real module would, and logs the call.
import json, os, sys
sys.path.insert(0, os.getcwd())
from benchmarks import interleaved as il
argv = sys.argv[1:]
module = argv[1]
def flag(name):
    for i, a in enumerate(argv):
        if a == "--" + name:
            return argv[i + 1]
        if a.startswith("--" + name + "="):
            return a.split("=", 1)[1]
log = {log!r}
calls = open(log).read().splitlines() if os.path.exists(log) else []
n = len(calls)
with open(log, "a") as f:
    f.write(module.split(".")[-1] + " " + (flag("backbones") or flag("framework")) + "\\n")
if module == "benchmarks.matmul_ceiling":
    doc = {{"framework": flag("framework"), "gflops": 40.0 + n, "n": int(flag("n"))}}
    path = flag("json_out")
else:
    backbone = flag("backbones")
    ms = {{"none": 100.0 + n, "mixmask": 200.0 + n}}
    if module == "benchmarks.step_throughput":
        doc = {tf_doc}
    else:
        doc = {torch_doc}
    path = flag("json")
json.dump(doc, open(path, "w"))
print("fake", module)
"""


def _fake_python(tmp_path):
    tf_doc = textwrap.dedent("""{"tensorflow": "2.fake", "keras": "3.fake", "inter_op_threads": "2",
        "intra_op_threads": "1", "keras_batchnorm": False, "rows": [{"backbone": backbone,
        "image_shape": il.image_shape(il.SETTINGS, backbone), "framework": "mocov2", "branch": b,
        "jit": False, "precision": "float32", "batch_size": 128, "ms_per_step": v} for b, v in ms.items()]}""")
    torch_doc = textwrap.dedent("""{"machine": {"torch": "2.fake", "threads": int(flag("threads"))},
        "args": {"queue_size": int(flag("queue_size")), "batch_size": int(flag("batch_size")),
        "width": int(flag("width")), "grid_size": int(flag("grid_size")),
        "small_image_shape": flag("small_image_shape"), "resnet_image_shape": flag("resnet_image_shape"),
        "amp": "none", "device": "cpu"}, "rows": [{"backbone": backbone,
        "image_shape": il.image_shape(il.SETTINGS, backbone), "branch": b, "mode": flag("modes"),
        "channels_last": flag("channels_last") == "true" or os.environ.get("FAKE_CHANNELS_LAST") == "1",
        "tf_padding": flag("tf_padding") == "true",
        "batch_size": 128, "amp": "none", "compiled_autograd": False, "ms_per_step": v}
        for b, v in ms.items()]}""")
    log = str(tmp_path / "calls.log")
    path = tmp_path / "fake_python"
    path.write_text(FAKE_PYTHON.format(python=sys.executable, log=log, tf_doc=tf_doc, torch_doc=torch_doc))
    path.chmod(0o755)
    return str(path), log


def test_main_interleaves_pairs_and_writes_everything(tmp_path, capsys):
    fake, log = _fake_python(tmp_path)
    out = str(tmp_path / "report.json")
    code = interleaved.main(["--backbones", "small_convnet", "--pairs", "3", "--steps", "2", "--warmup", "1",
                             "--tf_python", fake, "--torch_python", fake, "--ceiling", "both",
                             "--matmul_n", "64", "--out", out])
    printed = capsys.readouterr().out
    assert code == 0, printed
    calls = open(log).read().splitlines()
    assert calls == (["matmul_ceiling tf", "matmul_ceiling torch"]
                     + ["step_throughput small_convnet", "torch_reference small_convnet"] * 3
                     + ["matmul_ceiling tf", "matmul_ceiling torch"])  # A B A B A B between the ceilings
    report = json.load(open(out))
    steps = report["measurements"]
    assert [(m["pair"], m["side"]) for m in steps] == [(p, s) for p in (1, 2, 3) for s in ("tf", "torch")]
    assert all(m["warmup"] == interleaved.MIN_WARMUP and m["steps"] == 2 for m in steps)  # warm-up raised to 3
    assert all(m["command_line"].startswith(fake) and "--warmup" in m["command_line"] for m in steps)
    # the i-th call (0-based) of the fake returned 100 + i (plain) / 200 + i (MixMask) ms
    none = report["summary"]["small_convnet"]["none"]
    assert [(p["tf_ms"], p["torch_ms"]) for p in none["pairs"]] == [(102, 103), (104, 105), (106, 107)]
    assert none["median_tf_ms"] == 104 and none["median_torch_ms"] == 105
    assert report["tf_ceiling_gflops"] == 40.0 + 8 and report["torch_ceiling_gflops"] == 40.0 + 9
    assert [c["when"] for c in report["ceilings"]] == ["before", "before", "after", "after"]
    assert report["flops"]["small_convnet"]["backbone_forward_flops"] == 29_352_960
    env = report["environment"]
    assert env["nproc"] >= 1 and env["cpu"] and env["tensorflow"] == "2.fake" and env["torch"] == "2.fake"
    assert env["tf_intra_op_threads"] == "1" and env["torch_threads"] == interleaved.matmul_ceiling.cores()
    assert [r["branch"] for r in report["ceiling_fractions"]] == ["none", "mixmask"]
    assert "small_convnet   none         1     102.0     103.0     1.01x" in printed
    assert "of torch ceil" in printed and f"wrote {out}" in printed


def test_main_stops_when_a_child_ran_other_settings(tmp_path, capsys, monkeypatch):
    fake, _ = _fake_python(tmp_path)
    monkeypatch.setenv("FAKE_CHANNELS_LAST", "1")  # the torch stand-in reports channels_last=True
    out = str(tmp_path / "report.json")
    code = interleaved.main(["--backbones", "small_convnet", "--pairs", "2", "--tf_python", fake,
                             "--torch_python", fake, "--ceiling", "none", "--out", out])
    assert code == 1
    assert "channels_last" in capsys.readouterr().err
    report = json.load(open(out))  # partial results kept, the failing record included, without "ms"
    assert [(m["side"], "ms" in m) for m in report["measurements"]] == [("tf", True), ("torch", False)]


def test_missing_torch_python_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        interleaved.main(["--torch_python", str(tmp_path / "no_such_python"), "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--torch_python" in err and "does not exist" in err and "requirements-torch.txt" in err


# ------------------------------------------------------------------ the ceilings themselves


def test_tf_matmul_ceiling_tiny():
    saved = dict(os.environ)
    try:
        result = matmul_ceiling.measure("tf", n=64, reps=2, warmup=1)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert result["flops_per_matmul"] == 2 * 64 ** 3 and len(result["seconds"]) == 2
    assert result["gflops"] == pytest.approx(2 * 64 ** 3 / result["median_seconds"] / 1e9)
    assert result["framework_info"]["version"]


@pytest.mark.skipif(not os.path.exists(TORCH_PYTHON), reason=f"no torch venv at {TORCH_PYTHON}")
def test_torch_matmul_ceiling_tiny(tmp_path):
    path = str(tmp_path / "torch.json")
    result = subprocess.run([TORCH_PYTHON, "-m", "benchmarks.matmul_ceiling", "--framework", "torch", "--n", "64",
                             "--reps", "2", "--json_out", path], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch matmul 64x64 float32" in result.stdout
    doc = json.load(open(path))
    assert doc["framework"] == "torch" and doc["gflops"] > 0 and doc["framework_info"]["threads"] >= 1
