"""Fresh Python processes of edgepipe's own modules (the pipeline's bench, bench's memory probe).

``python -m edgepipe.x`` puts the working directory first on ``sys.path``: run from a directory that holds a
folder named ``edgepipe`` (a checkout, a user's project), the child would import that instead. Python 3.11's
``-P`` (PYTHONSAFEPATH) drops that entry; 3.10 lacks it, so the child is started through ``-c`` code that
removes the entry itself and then runs the module as ``-m`` would.
"""

from __future__ import annotations

import sys

_LAUNCH = ("import runpy, sys; del sys.path[0]; "
           "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)")


def python_module_argv(module: str, *args: str) -> list[str]:
    """argv for running ``module`` (like ``python -m module args...``) without the working directory on the path."""
    return [sys.executable, "-c", _LAUNCH, module, *args]
