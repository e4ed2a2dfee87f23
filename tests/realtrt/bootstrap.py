"""Import NVIDIA's real bindings as ``tensorrt`` in this process (a subprocess started by releases.py).

The wheel's package is ``tensorrt_bindings`` (the ``tensorrt`` meta-package re-exports it); edgepipe imports
``tensorrt``, so the module is registered under that name before anything else runs.
"""

import os
import sys

sys.path.insert(0, os.environ["EDGEPIPE_REAL_TRT_SITE"])
import tensorrt_bindings  # noqa: E402

sys.modules["tensorrt"] = tensorrt_bindings
tensorrt = tensorrt_bindings
