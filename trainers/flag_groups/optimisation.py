"""Optimisation flags: optimizer, learning-rate schedule, weight decay, epochs and batch size."""

from absl import flags

from . import UserError

FLAGS = flags.FLAGS

flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam", "lars"],
                  "Optimizer. LARS: weight decay inside the trust ratio; BatchNorm and biases excluded.")
flags.DEFINE_float("lars_eta", 0.001, "LARS trust coefficient.")
flags.DEFINE_enum("weight_decay_style", "decoupled", ["decoupled", "l2"],
                  "SGD: 'l2' adds weight_decay * w to the gradient before momentum, as torch.optim.SGD and the papers "
                  "(about 10x stronger at momentum 0.9); 'decoupled' is Keras' w -= lr * wd * w.")
flags.DEFINE_boolean("exclude_norm_and_bias_from_decay", False,
                     "SGD / Adam: no weight decay on normalisation parameters and biases (chosen by variable). "
                     "Off by default as in the MoCo reference; LARS always excludes them.")
flags.DEFINE_float("learning_rate", 0.06, "Peak learning rate.")
flags.DEFINE_float("sgd_momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("weight_decay", 5e-4, "Weight decay (Keras' decoupled form, scaled by the learning rate).")
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("batch_size", 256, "Global batch size.")
flags.DEFINE_integer("warmup_epochs", 0, "Linear warm-up epochs before the cosine schedule.")
flags.DEFINE_integer("steps_per_epoch", None, "Limit steps per epoch (smoke runs).")
flags.DEFINE_boolean("scale_learning_rate", False, "Linear scaling rule: the learning rate is --learning_rate x "
                     "--batch_size / --reference_batch_size (Goyal et al. 2017). Off: --learning_rate is used as is.")
flags.DEFINE_integer("reference_batch_size", 256, "The batch size --learning_rate is meant for under "
                     "--scale_learning_rate.")


def validate():
    """Checks the optimisation flags; raises UserError."""
    f = FLAGS
    for name in ("epochs", "batch_size"):
        if getattr(f, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(f, name)}")
    if f.learning_rate <= 0:
        raise UserError(f"--learning_rate must be positive, got {f.learning_rate}")
    if f.reference_batch_size < 1:
        raise UserError(f"--reference_batch_size must be >= 1, got {f.reference_batch_size}")
    if f.warmup_epochs < 0 or f.warmup_epochs >= f.epochs:
        if f.warmup_epochs != 0:
            raise UserError(f"--warmup_epochs ({f.warmup_epochs}) must be in [0, --epochs)")
    if f.weight_decay_style == "l2" and f.optimizer != "sgd":
        raise UserError("--weight_decay_style=l2 is implemented for --optimizer=sgd (LARS has its own L2 term)")


def build_optimizer(steps_per_epoch, model):
    """The --optimizer with a cosine schedule (after --warmup_epochs of linear warm-up) over --epochs, peaking
    at --learning_rate (times --batch_size / --reference_batch_size under --scale_learning_rate)."""
    import keras

    from mixmask_tf import optimizers

    total = FLAGS.epochs * steps_per_epoch
    warmup = FLAGS.warmup_epochs * steps_per_epoch
    peak = learning_rate(FLAGS.batch_size)
    if warmup:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(total - warmup, 1), warmup_target=peak, warmup_steps=warmup)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(peak, decay_steps=max(total, 1))
    if FLAGS.optimizer == "lars":
        return optimizers.LARS(schedule, momentum=FLAGS.sgd_momentum, weight_decay=FLAGS.weight_decay,
                               eta=FLAGS.lars_eta, exclude=optimizers.excluded_variables(model))
    if FLAGS.optimizer == "sgd" and FLAGS.weight_decay_style == "l2":
        exclude = optimizers.excluded_variables(model) if FLAGS.exclude_norm_and_bias_from_decay else ()
        return optimizers.SGDL2(schedule, momentum=FLAGS.sgd_momentum, l2=FLAGS.weight_decay, exclude=exclude)
    if FLAGS.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=FLAGS.sgd_momentum, weight_decay=FLAGS.weight_decay or None)
    else:
        optimizer = keras.optimizers.Adam(schedule, weight_decay=FLAGS.weight_decay or None)
    return optimizers.with_decay_exclusions(optimizer, model) if FLAGS.exclude_norm_and_bias_from_decay else optimizer


def learning_rate(global_batch):
    """The peak learning rate: --learning_rate, linearly scaled under --scale_learning_rate."""
    if FLAGS.scale_learning_rate:
        return FLAGS.learning_rate * global_batch / FLAGS.reference_batch_size
    return FLAGS.learning_rate
