"""Optional PyTorch adapter: the reader as a `torch.utils.data.IterableDataset` of batches.

Use with `DataLoader(dataset, batch_size=None, num_workers=K)`: the dataset yields whole
batches (the reader batches), each worker builds every K-th batch of its rank, and the
DataLoader's in-order collection restores the rank's order. Only this module imports torch.

Resuming: the trainer counts the batches it consumed and calls
`dataset.state_dict(batches_consumed)`; `load_state_dict` before the next iteration
continues from there, also with another world size, worker count or batch size.

Index columns (`INDEX_COLUMNS`: tokens, modality, local positions, patch positions) come as
int64, the dtype `nn.Embedding` takes; the reader's numpy batches keep the stored, narrower
dtypes (int16 positions are not valid embedding indices in torch).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from reader.stream import GatoReader
from schemas import output as out

TorchBatch = dict[str, Any]  # tensors, and lists of str for object arrays (episode ids)


# Columns a model looks up in an embedding table: widened to int64 (module doc).
INDEX_COLUMNS = frozenset({out.TOKENS, out.MODALITY, out.LOCAL_POSITIONS, out.PATCH_POSITIONS})


def _tensor(name: str, values: np.ndarray) -> torch.Tensor:
    if name in INDEX_COLUMNS:
        values = values.astype(np.int64, copy=False)
    return torch.from_numpy(values)


def to_torch(batch: Mapping[str, np.ndarray]) -> TorchBatch:
    """Tensors (sharing memory with the numpy arrays, index columns widened to int64); object
    arrays become lists."""
    return {k: (v.tolist() if v.dtype == object else _tensor(k, v)) for k, v in batch.items()}


class GatoIterableDataset(IterableDataset):
    """Batches of one rank. rank/world_size default to torch.distributed's, else 0/1."""

    def __init__(
        self,
        reader: GatoReader,
        batch_size: int,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        initialized = dist.is_available() and dist.is_initialized()
        self.reader = reader
        self.batch_size = batch_size
        self.rank = rank if rank is not None else (dist.get_rank() if initialized else 0)
        self.world_size = world_size if world_size is not None else (dist.get_world_size() if initialized else 1)
        self._state: Mapping[str, Any] | None = state

    def __iter__(self) -> Iterator[TorchBatch]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        stream = self.reader.batches(
            self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
            worker=worker,
            num_workers=num_workers,
            state=self._state,
        )
        try:
            for batch in stream:
                yield to_torch(batch)
        finally:
            stream.close()

    def state_dict(self, batches_consumed: int) -> dict[str, Any]:
        """The state after this rank (and, in lockstep, every rank) consumed that many batches
        since the last `load_state_dict` (or the start)."""
        if isinstance(batches_consumed, bool) or not isinstance(batches_consumed, int) or batches_consumed < 0:
            raise ValueError(f"batches_consumed must be an integer >= 0, got {batches_consumed!r}")
        return self.reader.state_after(
            self._state, batches=batches_consumed, batch_size=self.batch_size, world_size=self.world_size
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from `state` at the next `iter()` (a DataLoader iter starts its workers)."""
        if not isinstance(state, Mapping):
            raise ValueError(f"load_state_dict: state {state!r} is not a mapping (a state_dict() result)")
        self.reader.check_state(state)  # refuse another stream's (or a corrupt) state here, not in a worker
        self._state = dict(state)
