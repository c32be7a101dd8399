#!/usr/bin/env bash
# Sets up a fresh machine: Debian's Fashion-MNIST package (the embedded default dataset), a
# virtual environment .venv with the pinned Python packages, and .torchvenv with PyTorch for the
# import / export tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
# PyTorch (CPU) for the tests of the PyTorch import / export only, in its own environment: the
# library never needs it (tests/torch_env.py).
if [ ! -x .torchvenv/bin/python ]; then
  "$PYTHON" -m venv .torchvenv
fi
.torchvenv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements-torch.txt
echo "setup done: $(.venv/bin/python -c 'import tensorflow as tf, keras; print("tensorflow", tf.__version__, "keras", keras.__version__)' 2>/dev/null)"
