"""Torch thread limits for a block of code.

One context manager for every place that pins torch's intra-op thread count: the
benchmarks (one thread per worker, as Ray gives an actor), the synthetic generator
(reductions in a fixed order, so outputs do not depend on the machine's core count) and
the tests (no oversubscription on a small shared machine)."""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads; the previous count is restored on exit
    (also when the block raises)."""
    import torch

    if n < 1:
        raise ValueError(f"torch_threads: n must be >= 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
