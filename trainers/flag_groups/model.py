"""Model flags: the backbone and the sizes of the heads."""

from absl import flags

from mixmask_tf import registry

from . import UserError

FLAGS = flags.FLAGS

flags.DEFINE_enum("backbone", "small_convnet", list(registry.BACKBONES),
                  "Backbone: small_convnet; resnet18_cifar (3x3 stem, no max-pool); resnet50 (torchvision's "
                  "layout, the papers' ImageNet one); resnet50_keras (keras.applications.ResNet50).")
flags.DEFINE_integer("width", 32, "Width of the small ConvNet's first block.")
flags.DEFINE_integer("depth", 4, "Small ConvNet: 4 blocks, or 5 (a fifth, 8·width channels, stride 2).")
flags.DEFINE_integer("pool_grid", 1, "Small ConvNet: 1 global average pooling, g > 1 average pooling to g x g, "
                     "flattened.")
flags.DEFINE_integer("embedding_dim", 128, "Embedding dimension of the head / projector.")
flags.DEFINE_integer("hidden_dim", 0, "Hidden width of the head / projector / BYOL predictor (0: the feature size).")
flags.DEFINE_integer("projector_layers", 2, "SimCLR and SimSiam: Dense layers of the projector.")
flags.DEFINE_integer("predictor_hidden_dim", 0, "SimSiam: predictor bottleneck (0: embedding_dim / 4).")


def validate():
    """Checks the model flags; raises UserError."""
    for name in ("embedding_dim", "width"):
        if getattr(FLAGS, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(FLAGS, name)}")


def build_backbone(image_shape):
    """The --backbone for images of `image_shape` (H, W, C)."""
    from mixmask_tf import backbones

    kwargs = {}
    if FLAGS.backbone == "small_convnet":
        kwargs = {"width": FLAGS.width, "depth": FLAGS.depth, "pool_grid": FLAGS.pool_grid}
    return backbones.build_backbone(FLAGS.backbone, image_shape, **kwargs)
