"""Command-line entry points (the only code that parses flags).

Importing the package (which `python -m trainers.<command>` does first) sets the TensorFlow
environment every command wants, before TensorFlow is imported: oneDNN kernels on (TF 2.21
leaves them off on these AMD CPUs; turning them on made a graph-mode ResNet-18 step 1.7x
faster) and C++ start-up logging quiet. A value the user set wins.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
