"""A Fashion-MNIST classifier on an exported encoder: frozen head training, then fine-tuning.

    python -m examples.downstream_classifier --export_dir /tmp/mixmask_demo/export \
        [--version N] [--epochs_frozen 2] [--epochs_unfrozen 1] [--train_limit N] [--test_limit N]

This is serving-side use of the SavedModel written by `export.saved_model`: it needs only
TensorFlow, Keras, NumPy and the Fashion-MNIST reader, not the training code. The encoder is
`keras.layers.TFSMLayer(<export_dir>/<version>, call_endpoint="serving_default")`: it takes uint8
images [N, H, W, C] (any size; the SavedModel resizes and normalises them in its graph) and returns
`{"embedding": float32 [N, F]}`. A linear head (F -> 10 logits) is trained on top:

1. frozen: `encoder.trainable = False`; only the head learns (`--lr_frozen`);
2. unfrozen: `encoder.trainable = True`; encoder and head learn on at `--lr_unfrozen` (smaller).
   The encoder runs with `training=False` inside the SavedModel, so its BatchNorm statistics stay
   as exported; its convolution kernels and BatchNorm scales/offsets are fine-tuned.

After each phase the test accuracy is printed, and the last line is `RESULT {json}` with the
accuracies and how much the encoder's weights and embeddings moved in each phase.
"""

import argparse
import json
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from mixmask_tf.data import load_fashion_mnist

NUM_CLASSES = 10


def latest_version(export_dir):
    """`<export_dir>/<largest integer version>` (what TF Serving would serve).

    Raises:
      FileNotFoundError: no version folder in `export_dir`.
    """
    versions = [int(d) for d in os.listdir(export_dir)
                if d.isascii() and d.isdigit() and os.path.isdir(os.path.join(export_dir, d))] \
        if os.path.isdir(export_dir) else []
    if not versions:
        raise FileNotFoundError(f"no SavedModel version folder (1/, 2/, ...) in {export_dir}; "
                                f"export one with `python -m export.saved_model --model_dir ...`")
    return os.path.join(export_dir, str(max(versions)))


class Encoder(keras.layers.TFSMLayer):
    """`keras.layers.TFSMLayer` whose weights an optimizer with slots (Adam) can fine-tune.

    TFSMLayer names its weights after the SavedModel's variables (`conv0/kernel:0` ->
    `conv0_kernel:0`); Keras 3.15 optimizers then fail creating slots ("'conv0_kernel:0_momentum'
    is not a valid scope name"). This drops the `:0` suffix; the weights still wrap the
    SavedModel's own variables, so training them changes what the serving function computes.
    """

    def _add_existing_weight(self, weight):
        variable = keras.Variable(initializer=weight, trainable=weight.trainable, dtype=weight.dtype,
                                  shape=weight.shape, name=weight.name.split(":")[0].replace("/", "_"))
        self._track_variable(variable)


def build_classifier(version_path, image_shape, num_classes=NUM_CLASSES):
    """Classifier uint8 images [N, *image_shape] -> logits float32 [N, num_classes].

    Returns:
      (model, encoder, norm): the Keras model, its `TFSMLayer` encoder and the head's
      `Normalization` layer (to `adapt` on training embeddings [N, F] before training).
    """
    encoder = Encoder(version_path, call_endpoint="serving_default", trainable=True, name="encoder")
    images = keras.Input(shape=tuple(image_shape), dtype="uint8", name="images")
    embedding = encoder(images)["embedding"]
    # Encoder features are small and unevenly scaled: the head standardises each one with the
    # mean/variance of the training embeddings (`norm.adapt`, done by `main`) before the linear layer.
    norm = keras.layers.Normalization(name="head_norm")
    logits = keras.layers.Dense(num_classes, name="head")(norm(embedding))
    return keras.Model(images, logits, name="downstream_classifier"), encoder, norm


def _snapshot(encoder):
    return [np.array(v.numpy()) for v in encoder.weights if v.trainable]


def _max_change(before, after):
    return float(max((np.max(np.abs(a - b)) for a, b in zip(before, after) if a.size), default=0.0))


def main(argv=None):
    """Runs both phases; returns a dict of accuracies (in [0, 1]) and encoder changes."""
    parser = argparse.ArgumentParser(prog="python -m examples.downstream_classifier",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--export_dir", required=True, help="Export base folder (holds 1/, 2/, ...).")
    parser.add_argument("--version", type=int, default=None, help="Version to use (default: the latest).")
    parser.add_argument("--epochs_frozen", type=int, default=2)
    parser.add_argument("--epochs_unfrozen", type=int, default=1)
    parser.add_argument("--lr_frozen", type=float, default=1e-2, help="Head learning rate (Adam).")
    parser.add_argument("--lr_unfrozen", type=float, default=1e-3,
                        help="Learning rate once the encoder is unfrozen (Adam; smaller).")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--train_limit", type=int, default=None, help="Use the first N training images.")
    parser.add_argument("--test_limit", type=int, default=None, help="Use the first N test images.")
    parser.add_argument("--data_dir", default=None, help="Fashion-MNIST IDX folder (default: Debian's).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    version_path = (os.path.join(args.export_dir, str(args.version)) if args.version is not None
                    else latest_version(args.export_dir))
    if not os.path.exists(os.path.join(version_path, "saved_model.pb")):
        raise FileNotFoundError(f"{version_path} holds no saved_model.pb")
    channels = 1
    card_path = os.path.join(version_path, "assets.extra", "export.json")
    if os.path.exists(card_path):
        with open(card_path) as f:
            channels = int(json.load(f).get("image_shape", [None, None, 1])[-1])

    keras.utils.set_random_seed(args.seed)
    x_train, y_train = load_fashion_mnist("train", args.data_dir, limit=args.train_limit)  # uint8 [N, 28, 28, 1]
    x_test, y_test = load_fashion_mnist("test", args.data_dir, limit=args.test_limit)
    if channels == 3:  # an RGB encoder: grey -> RGB, as its training data would have been conformed
        x_train, x_test = np.repeat(x_train, 3, axis=-1), np.repeat(x_test, 3, axis=-1)
    print(f"encoder {version_path}: {len(x_train)} train / {len(x_test)} test images "
          f"{x_train.shape[1:]} uint8", flush=True)

    model, encoder, norm = build_classifier(version_path, x_train.shape[1:])
    norm.adapt(tf.data.Dataset.from_tensor_slices(x_train).batch(512).map(lambda x: encoder(x)["embedding"]))
    probe = tf.constant(x_test[:64])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    result = {"export": version_path, "train_examples": len(x_train), "test_examples": len(x_test)}

    for phase, trainable, epochs, lr in (("frozen", False, args.epochs_frozen, args.lr_frozen),
                                         ("unfrozen", True, args.epochs_unfrozen, args.lr_unfrozen)):
        encoder.trainable = trainable
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=["accuracy"])
        weights = _snapshot(encoder)
        embedding = encoder(probe)["embedding"].numpy()
        model.fit(x_train, y_train, batch_size=args.batch_size, epochs=epochs, shuffle=True, verbose=0)
        _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
        result[f"{phase}_test_accuracy"] = float(accuracy)
        result[f"{phase}_trainable_weights"] = len(model.trainable_weights)
        result[f"{phase}_encoder_weight_change"] = _max_change(weights, _snapshot(encoder))
        result[f"{phase}_embedding_change"] = float(np.max(np.abs(
            encoder(probe)["embedding"].numpy() - embedding)))
        print(f"{phase} encoder ({epochs} epochs, lr {lr:g}, {len(model.trainable_weights)} trainable "
              f"tensors): test accuracy {accuracy:.4f}; encoder weights moved by up to "
              f"{result[f'{phase}_encoder_weight_change']:.3g}", flush=True)
    print("RESULT " + json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        print(f"downstream_classifier: error: {e}", file=sys.stderr)
        sys.exit(2)
