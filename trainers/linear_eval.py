r"""Linear probe of a pretrained encoder (frozen, inference mode): top-1 / top-5.

    python -m trainers.linear_eval --encoder /tmp/mixmask_demo                   # fast protocol
    python -m trainers.linear_eval --encoder /tmp/mixmask_demo --protocol moco   # MoCo's protocol
    python -m trainers.linear_eval --encoder /tmp/mixmask_demo/export            # the served SavedModel

Protocols (mixmask_tf.linear_probe.PROTOCOLS):
  fast (default): features computed once and cached (no augmentation), standardised, SGD with
      Nesterov momentum, lr 0.1, cosine, 30 epochs, batch 256, weight decay 1e-4.
  moco: MoCo's linear classification: SGD lr 30, momentum 0.9, weight decay 0, batch 256,
      100 epochs, lr x 0.1 at epochs 60 and 80, random resized crop + flip on the training
      images (encoded anew every step); --augment=off caches features under these settings.
Any field can be overridden by its flag. Writes `<model_dir>/eval/linear-<protocol>.json` for a run.
"""

import time

from absl import app, flags

from . import eval_common
from .flag_groups import UserError

FLAGS = flags.FLAGS

flags.DEFINE_enum("protocol", "fast", ["fast", "moco"], "Linear-probe protocol (defaults of every setting below).")
flags.DEFINE_enum("augment", "auto", ["auto", "on", "off"],
                  "Random resized crop + flip on training images (auto: the protocol's; off caches features).")
flags.DEFINE_integer("epochs", None, "Epochs (default: the protocol's).")
flags.DEFINE_integer("batch_size", None, "Batch size (default: the protocol's).")
flags.DEFINE_float("learning_rate", None, "Base learning rate (default: the protocol's).")
flags.DEFINE_float("weight_decay", None, "L2 weight decay (default: the protocol's).")
flags.DEFINE_list("milestones", None, "Step schedule epochs (default: the protocol's).")
flags.DEFINE_list("crop_scale", None, "Random resized crop area range 'min,max' (default 0.08,1).")
flags.DEFINE_integer("seed", 0, "Seed of the classifier init, batch order and augmentation.")


def probe_config():
    from mixmask_tf import linear_probe

    overrides = {"epochs": FLAGS.epochs, "batch_size": FLAGS.batch_size, "learning_rate": FLAGS.learning_rate,
                 "weight_decay": FLAGS.weight_decay}
    try:
        if FLAGS.milestones is not None:
            overrides["milestones"] = tuple(int(m) for m in FLAGS.milestones)
        if FLAGS.crop_scale is not None:
            if len(FLAGS.crop_scale) != 2:
                raise UserError("--crop_scale takes two numbers 'min,max'")
            overrides["crop_scale"] = tuple(float(v) for v in FLAGS.crop_scale)
    except ValueError as e:
        raise UserError(f"--milestones / --crop_scale: {e}") from e
    if FLAGS.augment != "auto":
        overrides["augment"] = FLAGS.augment == "on"
    config = linear_probe.protocol(FLAGS.protocol, **overrides)
    if config.augment and config.standardize:
        config = linear_probe.protocol(FLAGS.protocol, **overrides, standardize=False)
    return config


def run():
    import dataclasses

    from mixmask_tf import linear_probe

    config = probe_config()
    encoder = eval_common.load_encoder()
    print(eval_common.describe(encoder), flush=True)
    train, test = eval_common.open_labeled_sources(encoder)
    num_classes = int(train.info.num_classes)
    if num_classes < 2:
        raise UserError(f"the train split has {num_classes} class(es); a linear probe needs at least 2")

    def log(epoch, loss, lr):
        if epoch == 1 or epoch == config.epochs or epoch % max(1, config.epochs // 10) == 0:
            print(f"epoch {epoch}/{config.epochs}  loss {loss:.4f}  lr {lr:.4g}", flush=True)

    test_features, test_labels = eval_common.features(encoder, test)
    start = time.time()
    if config.augment:
        print(f"linear probe ({FLAGS.protocol}, augmented: features recomputed every step)", flush=True)
        classifier = linear_probe.train_augmented(encoder, train, num_classes, config, seed=FLAGS.seed, log_fn=log)
        train_result = None
    else:
        train_features, train_labels = eval_common.features(encoder, train, cache_tag="(cached for every epoch)")
        print(f"linear probe ({FLAGS.protocol}, cached features)", flush=True)
        classifier = linear_probe.train_on_features(train_features, train_labels, num_classes, config,
                                                    seed=FLAGS.seed, log_fn=log)
        train_result = linear_probe.evaluate(classifier, train_features, train_labels)
    result = linear_probe.evaluate(classifier, test_features, test_labels)
    results = {**eval_common.common_results(encoder, train, test), "protocol": FLAGS.protocol,
               "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()},
               "seed": FLAGS.seed, "linear_top1": result["top1"], "linear_top5": result.get("top5"),
               "train_top1": train_result["top1"] if train_result else None,
               "train_seconds": round(time.time() - start, 1)}
    path = eval_common.write_results(f"linear-{FLAGS.protocol}", results)
    top5 = f", top-5 {result['top5']:.2f}%" if "top5" in result else ""
    print(f"linear probe ({FLAGS.protocol}) on {FLAGS.dataset} {FLAGS.test_split}: top-1 {result['top1']:.2f}%"
          f"{top5}" + (f"  [{path}]" if path else ""), flush=True)


def entry_point():
    """The console script `mixmask-linear-eval`."""
    app.run(eval_common.main_wrapper("linear_eval", run))


if __name__ == "__main__":
    entry_point()
