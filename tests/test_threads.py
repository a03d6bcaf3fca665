"""``annotator.threads.torch_threads``: the one torch thread limit."""
from __future__ import annotations

import pytest
import torch

from annotator.threads import torch_threads


def test_torch_threads_sets_and_restores_the_intra_op_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
        with torch_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"):
        with torch_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before  # restored when the block raises
    with pytest.raises(ValueError):
        with torch_threads(0):
            pass
    assert torch.get_num_threads() == before
