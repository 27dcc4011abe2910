"""``python -m varstore``: the ``varstore`` command, for when the script is not on PATH.

    python -m varstore --version
    python -m varstore inspect runs/digits/model.ckpt-600
"""
import sys

from .tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
