"""Framework flags: which siamese framework, and the options of each (read by signature)."""

from absl import flags

from mixmask_tf import registry

from . import UserError

FLAGS = flags.FLAGS

flags.DEFINE_enum("framework", "mocov2", list(registry.FRAMEWORKS), "Siamese framework.")
flags.DEFINE_integer("queue_size", 4096, "MoCo queue size K (>= batch_size; >= 2 x batch_size when symmetric).")
flags.DEFINE_float("moco_momentum", 0.99, "MoCo: momentum m of the key encoder.")
flags.DEFINE_boolean("symmetric", False, "MoCo: symmetric loss of Un-Mix's CIFAR code.")
flags.DEFINE_float("temperature", 0.2, "MoCo / SimCLR: temperature of every InfoNCE / NT-Xent term.")
flags.DEFINE_enum("mix_target", "view2", ["view2", "view1"], "SimCLR: clean view the branch terms score against.")
flags.DEFINE_float("tau", 0.99, "BYOL: base EMA coefficient of the target network.")
flags.DEFINE_enum("tau_schedule", "constant", ["constant", "cosine"], "BYOL: tau constant or cosine-scheduled to 1.")


def validate():
    """Checks the framework flags (and the batch size against the queue); raises UserError."""
    f = FLAGS
    if f.queue_size <= 0:
        raise UserError(f"--queue_size must be positive, got {f.queue_size}")
    if f.framework.startswith("moco"):
        keys_per_step = f.batch_size * (2 if f.symmetric else 1)
        if f.queue_size < keys_per_step:
            raise UserError(f"--queue_size ({f.queue_size}) must be >= --batch_size ({f.batch_size})"
                            + (" x 2 with --symmetric" if f.symmetric else ""))
    elif f.symmetric:
        raise UserError("--symmetric applies to MoCo only (SimCLR, BYOL and SimSiam are symmetric already)")
    if f.temperature <= 0:
        raise UserError(f"--temperature must be positive, got {f.temperature}")
    if not 0 <= f.moco_momentum < 1:
        raise UserError(f"--moco_momentum must be in [0, 1), got {f.moco_momentum}")


def framework_options(steps_per_epoch):
    """The flags' values of the options the chosen framework takes (models.framework_options)."""
    from mixmask_tf import models

    f = FLAGS
    values = dict(embedding_dim=f.embedding_dim, hidden_dim=f.hidden_dim or None, queue_size=f.queue_size,
                  momentum=f.moco_momentum, temperature=f.temperature, symmetric=f.symmetric,
                  projector_layers=f.projector_layers, predictor_hidden_dim=f.predictor_hidden_dim or None,
                  mix_target=f.mix_target, tau=f.tau, tau_schedule=f.tau_schedule,
                  total_steps=f.epochs * steps_per_epoch)
    allowed = models.framework_options(f.framework)
    return {name: value for name, value in values.items() if name in allowed}
