"""Entry point of the Bazel py_test targets: runs one test file with pytest."""

import os
import sys

import pytest

if __name__ == "__main__":
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", here, *sys.argv[1:]]))
