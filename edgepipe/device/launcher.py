"""edgepipe_device.py: run an edgepipe deploy bundle on a device (TensorRT + numpy, no pip install).

    python3 edgepipe_device.py build|eval|infer|bench|triton|deepstream|doctor BUNDLE ...

This launcher uses only syntax every Python 3 (and 2.7) parses, so a Python too old for the runtime
gets one line and exit code 2 instead of a SyntaxError from the runtime package beside it (edgepipe_device/).
"""
import os
import sys

if sys.version_info < (3, 6):
    sys.stderr.write("error: Python %d.%d is too old for the edgepipe device runtime, which needs Python 3.6 or "
                     "newer (JetPack 4.6 ships 3.6: run it with python3)\n" % tuple(sys.version_info[:2]))
    sys.exit(2)

# The package directory edgepipe_device/ beside this file: a regular package is found before a module of the same
# name, so `import edgepipe_device` is the package, not this script.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edgepipe_device.cli import main  # noqa: E402 - after the version check, on purpose

if __name__ == "__main__":
    sys.exit(main())
