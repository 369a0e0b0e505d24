"""What the course's own processes do without, at start and at exit.

Both are fixed costs that every kernel, every graded submission and every test process pays,
and that the course's own processes need not pay. A learner's own kernel in JupyterLab is left
as it is.

**At start: jsonschema's IRI grammar** (:func:`without_the_iri_grammar`). When jsonschema is
imported (by nbformat, so by nbclient and nbgrader), it imports the optional package
rfc3987-syntax (which jupyter-events installs) for its "iri" format checker, and that package
compiles an Earley grammar as it is imported: about 2.4 s. nbformat, nbconvert, nbclient and
nbgrader never check formats, so ``python -m attnedu.grading`` (every graded submission is one
such process), ``python -m attnedu.build`` (``make book``) and the test processes
(``tests/conftest.py``) do without it: jsonschema then has no "iri" checker, as when the package
is not installed. Collecting the tests took 10-11 s in one process with the grammar, 5-6 s without.

**At exit: the last garbage collection** (:func:`freeze_at_exit`). When a Python process ends,
the interpreter runs one last garbage collection over every object it holds. A process that has
imported PyTorch and Matplotlib, or nbgrader and nbconvert, holds a few million of them (their
modules, functions and classes), and that collection takes most of a second. Measured on the
course's machine: ``python -c "import torch"`` takes 1.96 s, and 1.36 s when ``gc.freeze()`` has
first moved every object out of the collector's reach; a grading job's process (nbgrader,
nbconvert, ``attnedu.grading``, no torch) takes 0.6 s to end. :func:`freeze_at_exit` asks for
``gc.freeze()`` at exit. It runs after every ``atexit`` function registered later (``atexit`` runs
last in, first out: temporary folders, PyTorch's cache folder) and just before the last
collection, which then has nothing to scan. The objects are freed with the process, as they would
be a moment later. What is lost is only the finalizer (``__del__``) of an object caught in a
reference cycle that nothing collected before the end; the course cleans up explicitly
(``tests/test_notebooks.py`` checks that chapters 13 and 14 leave nothing behind). Who asks for
it (about 45 kernels and 20 grading processes in one ``make test``):

- the kernels that the course starts itself, ``attnedu.build`` (the book, the tests) and
  ``attnedu.grading`` (each graded submission), which load this module as an IPython extension
  (:data:`KERNEL_ARGUMENTS`); it changes nothing in the kernel's namespace;
- each grading job's own process (``python -m attnedu.grading _worker``).
"""

from __future__ import annotations

import atexit
import gc
import sys

__all__ = ["KERNEL_ARGUMENTS", "freeze_at_exit", "load_ipython_extension", "without_the_iri_grammar"]

#: The kernel's command-line arguments that load this extension (nbclient's ``extra_arguments``).
KERNEL_ARGUMENTS = [f"--IPKernelApp.extensions={__name__}"]


def without_the_iri_grammar() -> None:
    """Spare this process jsonschema's IRI grammar. Nothing changes in a process that has
    imported jsonschema already."""
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # None: its import raises ImportError


def freeze_at_exit() -> None:
    """When this process ends, skip the interpreter's last garbage collection."""
    atexit.unregister(gc.freeze)  # once, however often it is asked
    atexit.register(gc.freeze)


def load_ipython_extension(ipython) -> None:  # noqa: ARG001 (IPython's signature)
    """Called by IPython when the kernel starts."""
    freeze_at_exit()
