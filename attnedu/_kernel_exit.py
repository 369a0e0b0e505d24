"""A kernel that ends in a few milliseconds instead of a second.

When a Python process ends, the interpreter runs one last garbage collection over every object
it holds. A kernel that has imported PyTorch and Matplotlib holds a few million of them (their
modules, functions and classes), and that last collection takes most of a second: measured with
``python -c "import torch"``, 1.96 s with it and 1.36 s when ``gc.freeze()`` has moved every object
out of the collector's reach first. The notebooks that the course executes on its own
(``attnedu.build``: the book and the tests; ``attnedu.grading``: every graded submission) wait for
their kernel to end, about 45 kernels in one ``make test``.

Those kernels load this module as an IPython extension (:data:`KERNEL_ARGUMENTS`), and it asks
for ``gc.freeze()`` at exit: after every ``atexit`` function (each registered later, so run
earlier: temporary folders, PyTorch's cache folder), just before the last collection. The
objects are then not collected but freed with the process, as they would be a moment later.
What is lost is only the finalizer (``__del__``) of an object caught in a reference cycle that
nothing collected before the kernel ended; the course's notebooks clean up in their own cells
(and ``tests/test_notebooks.py`` checks that chapters 13 and 14 leave nothing behind).

It changes nothing in the kernel's namespace, and a learner's own kernel (JupyterLab) does not
load it.
"""

from __future__ import annotations

import atexit
import gc

__all__ = ["KERNEL_ARGUMENTS", "load_ipython_extension"]

#: The kernel's command-line arguments that load this extension (nbclient's ``extra_arguments``).
KERNEL_ARGUMENTS = [f"--IPKernelApp.extensions={__name__}"]


def load_ipython_extension(ipython) -> None:  # noqa: ARG001 (IPython's signature)
    """Called by IPython when the kernel starts: freeze every object at exit."""
    atexit.register(gc.freeze)
