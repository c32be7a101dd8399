"""Entry point of the Bazel py_binary targets: runs the module named by the first argument as
`python -m <module>` does (the command-line modules import their own package relatively)."""

import runpy
import sys

if __name__ == "__main__":
    runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
