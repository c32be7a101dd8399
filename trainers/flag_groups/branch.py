"""Branch flags: which branch, and its options' flags, generated from their declarations
(``mixmask_tf.options``: default, help and check of each option, in one place)."""

from absl import flags

from mixmask_tf import options as declared
from mixmask_tf import registry

from . import UserError

FLAGS = flags.FLAGS

flags.DEFINE_enum("branch", "mixmask", list(registry.BRANCHES),
                  "Branch: MixMask, Un-Mix, MixMask* (both), erase-based masking, or MSCN (Masked Siamese "
                  "ConvNets: high-pass filter, masks on every view, two extra views; --mscn_* flags).")


def _define_flags():
    """One flag per declared option flag (``mixmask_tf.options``); a flag several branches share is defined
    once, and they must agree on its default. Returns flag name -> its option (the first declaration)."""
    defined = {}
    for branch in registry.BRANCHES:
        for option in declared.declared(branch):
            if option.flag is None:
                continue
            if option.flag in defined:
                if defined[option.flag].default != option.default:
                    raise ValueError(f"--{option.flag}: branches declare different defaults "
                                     f"({defined[option.flag].default!r}, {option.default!r})")
                continue
            defined[option.flag] = option
            kind, default = option.flag_kind(), option.default
            if kind == "enum":
                flags.DEFINE_enum(option.flag, default, list(option.choices), option.help)
            elif kind == "pair":
                flags.DEFINE_list(option.flag, None if default is None else [str(v) for v in default], option.help)
            else:
                {"float": flags.DEFINE_float, "int": flags.DEFINE_integer, "bool": flags.DEFINE_boolean,
                 "string": flags.DEFINE_string}[kind](option.flag, default, option.help)
    return defined


FLAG_OPTIONS = _define_flags()


def flag_value(option):
    """The value the flag of `option` gives, as the constructor takes it (pairs as tuples of floats)."""
    value = FLAGS[option.flag].value
    if option.flag_kind() == "pair" and value is not None:
        if len(value) != 2:
            raise UserError(f"--{option.flag} takes two numbers 'a,b', got {','.join(value)}")
        try:
            return tuple(float(v) for v in value)
        except ValueError as e:
            raise UserError(f"--{option.flag}: {e}") from e
    return value


def validate():
    """Checks the --branch's options as its constructor does, before TensorFlow is imported (each option's
    declared check, ``mixmask_tf.options``); raises UserError naming the flag. What needs the images (a
    grid larger than them) is checked when the branch meets the data."""
    options = [option for option in declared.declared(FLAGS.branch) if option.flag]
    values = option_values()
    for option in options:
        try:
            option.validate(values[option.name], values)
        except ValueError as e:
            raise UserError(f"--{option.flag}: {e}") from e


def option_values():
    """Branch option -> the value its flag gives (its declared default where no flag sets it), for every
    option of the --branch."""
    return {option.name: flag_value(option) if option.flag else option.default
            for option in declared.declared(FLAGS.branch)}


# Branch options that come from the data, not from a flag (the CLI passes them: `build_branch(mean=..., std=...)`).
DATA_OPTIONS = ("mean", "std")


def build_branch(**data_options):
    """The --branch with its options from their flags (or their declared defaults).

    `data_options` (e.g. the data's `mean` and `std`) are passed to branches that take them.
    """
    from mixmask_tf import branches

    values = option_values()
    values.update({name: value for name, value in data_options.items() if name in values})
    return branches.build_branch(FLAGS.branch, **values)
