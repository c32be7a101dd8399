"""Converts an exported encoder to TensorFlow Lite, with TF Lite builtin ops only.

    python -m export.tflite --saved_model=<export_dir>/<version> --output=model.tflite [--signature=tflite]

Converts one signature of a SavedModel written by `export.saved_model` (by default its `tflite`
signature: `pixels` float32 [N, H, W, C] in [0, 255] at the training size -> `embedding` float32
[N, F]; see that module) with `tf.lite.TFLiteConverter.from_saved_model(path,
signature_keys=[signature])` and `target_spec.supported_ops = [TFLITE_BUILTINS]`: no Select TF
ops (Flex), so the file runs on the plain TF Lite / LiteRT runtime. The flatbuffer is written
atomically (a temporary file in the same folder, then a rename); an existing file is replaced.

The TF Lite model keeps the signature's name, input and output names; its batch dimension is
dynamic (the interpreter's signature runner resizes it to the batch it is given). `serving_default`
and `serve_bytes` cannot be converted this way (antialiased resize = `ScaleAndTranslate`, float64
arithmetic, `EnsureShape`, image decoding are not builtins); asking for them is an error.

Errors (a missing SavedModel, a missing signature, a signature that needs non-builtin ops, an
output path that is a folder) print one line `tflite: error: ...` and exit with status 2.
"""

import os
import sys

# Run as the command (`python -m export.tflite`, or the console script `mixmask-tflite`): quiet
# TensorFlow's C++ start-up logging before TensorFlow is imported. As a library, leave it alone.
if __name__ == "__main__" or os.path.basename(sys.argv[0] if sys.argv else "") == "mixmask-tflite":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.lite.python import schema_py_generated as tflite_schema
from tensorflow.lite.python.convert_phase import ConverterError

from mixmask_tf import checkpoint

from . import saved_model

gfile = tf.io.gfile

DEFAULT_SIGNATURE = saved_model.TFLITE

# Op codes that mean the weights were left as resource variables instead of being frozen into
# constants: such a model reads uninitialised variables in TF Lite (wrong outputs, or an error).
_VARIABLE_OPS = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"}
_OP_NAMES = {code: name for name, code in vars(tflite_schema.BuiltinOperator).items() if not name.startswith("_")}


def signature_defs(path):
    """The `serve` MetaGraph's signature_defs of the SavedModel folder `path` (read from
    `saved_model.pb`, without loading the model).

    Raises:
      FileNotFoundError: `path` holds no `saved_model.pb` (the message names the version
        folders when `path` is an export's base folder).
    """
    pb = os.path.join(path, "saved_model.pb")
    if not gfile.exists(pb):
        versions = saved_model.list_versions(path)
        hint = (f"; it is an export base folder: pass a version folder, e.g. {os.path.join(path, str(versions[-1]))}"
                if versions else "; pass a version folder <export_dir>/<version> written by export.saved_model")
        raise FileNotFoundError(f"no SavedModel at {path} (no saved_model.pb){hint}")
    proto = saved_model_pb2.SavedModel()
    with gfile.GFile(pb, "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise FileNotFoundError(f"the SavedModel at {path} has no MetaGraph tagged 'serve'")


def op_names(model):
    """Sorted names of the operators a TF Lite flatbuffer (bytes) uses, e.g. ['CONV_2D', 'MEAN'];
    a custom op (Flex / Select TF op included) is listed as 'CUSTOM:<name>'."""
    root = tflite_schema.Model.GetRootAs(model, 0)
    names = set()
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == tflite_schema.BuiltinOperator.CUSTOM:
            names.add(f"CUSTOM:{(code.CustomCode() or b'').decode()}")
        else:
            names.add(_OP_NAMES.get(builtin, str(builtin)))
    return sorted(names)


def convert_to_tflite(saved_model_path, signature=DEFAULT_SIGNATURE):
    """Converts one signature of a SavedModel to a TF Lite flatbuffer with builtin ops only.

    Args:
      saved_model_path: a version folder `<export_dir>/<version>` written by `export.saved_model`.
      signature: the signature to convert (default `tflite`).

    Returns:
      the flatbuffer, bytes (one TF Lite signature named `signature`, same input/output names).

    Raises:
      FileNotFoundError: no SavedModel at `saved_model_path`.
      ValueError: the SavedModel has no such signature, the signature needs ops that are not TF
        Lite builtins, or the converted model kept its weights as variables.
    """
    defs = signature_defs(saved_model_path)
    if signature not in defs:
        names = sorted(k for k in defs if not k.startswith("__"))
        hint = (f"; exports written before the {DEFAULT_SIGNATURE!r} signature existed need exporting again "
                f"(python -m export.saved_model --model_dir <run>)" if signature == DEFAULT_SIGNATURE else "")
        raise ValueError(f"the SavedModel {saved_model_path} has no signature {signature!r} "
                         f"(it has {', '.join(names)}){hint}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_path, signature_keys=[signature])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        model = converter.convert()
    except ConverterError as e:
        # The converter's summary lines: "TF Select ops: EnsureShape, Mul, ..." / "Custom ops: ScaleAndTranslate".
        lines = [line.strip() for line in str(e).splitlines() if line.startswith(("TF Select ops:", "Custom ops:"))]
        detail = "; ".join(lines) if lines else (str(e).strip().splitlines() or ["conversion failed"])[0]
        hint = f"; convert the {DEFAULT_SIGNATURE!r} signature" if signature != DEFAULT_SIGNATURE else ""
        raise ValueError(f"signature {signature!r} of {saved_model_path} cannot be converted with TF Lite builtin ops "
                         f"only ({detail[:400]}){hint}") from e
    variables = _VARIABLE_OPS.intersection(op_names(model))
    if variables:
        raise ValueError(f"the converted signature {signature!r} of {saved_model_path} reads its weights from "
                         f"variables ({', '.join(sorted(variables))}) instead of constants")
    return model


def describe(saved_model_path, signature):
    """'pixels float32 [-1, 28, 28, 1] -> embedding float32 [-1, 32]' for a signature_def."""
    sig = signature_defs(saved_model_path)[signature]

    def tensors(infos):
        return ", ".join(f"{name} {tf.dtypes.as_dtype(info.dtype).name} {[d.size for d in info.tensor_shape.dim]}"
                         for name, info in sorted(infos.items()))

    return f"{tensors(sig.inputs)} -> {tensors(sig.outputs)}"


def main(argv):
    from absl import flags
    from absl import logging as absl_logging

    del argv
    absl_logging.set_verbosity(absl_logging.WARNING)
    tf.get_logger().setLevel("ERROR")
    f = flags.FLAGS
    try:
        if gfile.isdir(f.output):
            raise ValueError(f"--output {f.output} is a folder; give the path of the .tflite file to write")
        model = convert_to_tflite(f.saved_model, f.signature)
    except (FileNotFoundError, ValueError) as e:
        print(f"tflite: error: {e}", file=sys.stderr)
        sys.exit(2)
    checkpoint.atomic_write_bytes(f.output, model)
    print(f"wrote {f.output} ({len(model)} bytes): signature {f.signature!r}, "
          f"{describe(f.saved_model, f.signature)}; ops {', '.join(op_names(model))}")


def entry_point():
    """The command (`python -m export.tflite`, or the console script `mixmask-tflite`)."""
    from absl import app, flags

    flags.DEFINE_string("saved_model", None, "Version folder <export_dir>/<version> of an export.", required=True)
    flags.DEFINE_string("output", None, "The .tflite file to write (replaced atomically if it exists).",
                        required=True)
    flags.DEFINE_string("signature", DEFAULT_SIGNATURE, "The signature to convert.")
    app.run(main)


if __name__ == "__main__":
    entry_point()
