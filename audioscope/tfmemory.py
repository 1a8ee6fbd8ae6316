"""TensorFlow's memory on the CPU: its pooling (BFC) allocator for every command.

TensorFlow's default CPU allocator takes every tensor from glibc's malloc,
and TensorFlow's tf.data sets glibc's trim threshold to 128 kB for the whole
process the first time a dataset maps ("Memory patch applied" in its log),
which also fixes glibc's mmap threshold at 128 kB: from then on every tensor
over 128 kB is a fresh ``mmap``, its pages zeroed by the kernel on first
touch and handed back at ``munmap``, step after step. On 2 cores of an AMD
EPYC virtual machine that put two thirds of the coincidence training's CPU
time in the kernel. TensorFlow's BFC allocator keeps the memory it freed
and hands it out again: the same model bit for bit, several times fewer
system seconds (``benchmarks/tf_allocator.py`` measures both).

:func:`configure` sets ``TF_CPU_ALLOCATOR_USE_BFC=true`` unless the user has
set it (``false`` keeps TensorFlow's default); TensorFlow reads it when it
makes its first CPU allocator, so it must run before TensorFlow is used.
``audioscope.cli.main`` calls it for every command (worker processes that
the local runner starts inherit it), and the score pipeline's model loader
calls it on remote workers. The pool grows to the process's peak and is kept
until the process ends (capped at 64 GB by default; TensorFlow's
``TF_CPU_BFC_MEM_LIMIT_IN_MB`` sets another cap).
"""

from __future__ import annotations

import os

#: environment variables TensorFlow reads when it makes its CPU allocator
ALLOCATOR_ENV = {"TF_CPU_ALLOCATOR_USE_BFC": "true"}


def configure() -> None:
    """Set :data:`ALLOCATOR_ENV` where the user has not (no effect on a TensorFlow already in use)."""
    for name, value in ALLOCATOR_ENV.items():
        os.environ.setdefault(name, value)
