"""A trial with a fractional GPU caps its CUDA memory at its fraction, and backend=auto sizes data against
that share, not the whole device. Runs only where CUDA is visible."""

from __future__ import annotations

import pytest
import torch

from loaders import backends
from study.trainable import claim_gpu

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device visible: the fractional-GPU cap runs only on a GPU machine")


def test_fraction_caps_memory_and_auto_backend_sizes_against_it() -> None:
    cuda = torch.device("cuda")
    free, total = torch.cuda.mem_get_info(cuda)
    claim_gpu(0.25)
    try:
        assert torch.cuda.get_per_process_memory_fraction(cuda) == 0.25
        share = backends.free_memory(cuda)
        assert 0 < share <= 0.25 * total
        # Data that fits half the device's free memory but not half the share goes to ffcv.
        need = int(0.6 * share)
        assert need <= free // 2 and backends.choose("auto", need, 0, 1, cuda) == "ffcv"
        assert backends.choose("auto", share // 4, 0, 1, cuda) == "tensor"
        with pytest.raises(torch.OutOfMemoryError):  # the allocator refuses past the share
            torch.empty(int(0.3 * total), dtype=torch.uint8, device=cuda)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
