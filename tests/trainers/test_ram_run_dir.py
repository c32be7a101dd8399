"""A whole pretraining run in a `ram://` model directory (TensorFlow's in-memory filesystem, standing
in for gs://): every file goes through tf.io.gfile, the second run resumes from the first's
checkpoint, and the export is a loadable SavedModel. ram:// lives in one process, so both runs
happen in one subprocess."""

import subprocess
import sys

import pytest

from conftest import REPO_ROOT

# A whole training run, resumed and exported, in a subprocess: the slow tier.
pytestmark = pytest.mark.slow

SCRIPT = r'''
import json, os, sys
from absl import flags
from trainers import pretrain
import tensorflow as tf
FLAGS = flags.FLAGS
common = ["pretrain", "--dataset=synthetic", "--image_size=16", "--train_limit=128", "--test_limit=32", "--width=4",
          "--batch_size=32", "--queue_size=64", "--steps_per_epoch=2", "--knn_every=1", "--augment=cifar",
          "--verbose=0", "--model_dir=ram://run"]
FLAGS(common + ["--epochs=1", "--noexport"])
pretrain.run()
FLAGS.unparse_flags()
FLAGS(common + ["--epochs=2"])
pretrain.run()
files = sorted(os.path.join(root, name)[len("ram://run/"):] for root, _, names in tf.io.gfile.walk("ram://run")
               for name in names)
print("FILES " + json.dumps(files))
print("METRICS " + json.dumps([json.loads(l)["epoch"] for l in
                               tf.io.gfile.GFile("ram://run/metrics.jsonl").read().splitlines()]))
served = tf.saved_model.load("ram://run/export/1").signatures["serving_default"]
print("EMBEDDING", served(images=tf.zeros([2, 16, 16, 3], tf.uint8))["embedding"].shape)
'''


def test_a_run_in_a_ram_model_dir_resumes_and_exports():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "resumed from ram://run/checkpoints/ckpt-2 (epoch 1, step 2)" in out, out
    assert "exported SavedModel to ram://run/export/1" in out
    import json

    files = json.loads(out.split("FILES ")[1].splitlines()[0])
    for expected in ("flags.cfg", "config.json", "metrics.jsonl", "results.json", "backbone.keras", "masks.png",
                     "curves.png", "checkpoints/checkpoint", "checkpoints/ckpt-4.index",
                     "export/1/saved_model.pb", "export/1/assets.extra/export.json"):
        assert expected in files, (expected, files)
    assert any(f.startswith("tensorboard/") for f in files)
    assert not [f for f in files if ".tmp" in f], files
    assert json.loads(out.split("METRICS ")[1].splitlines()[0]) == [1, 2]
    assert "EMBEDDING (2, " in out
