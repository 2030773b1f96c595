"""The PyTorch adapter: DataLoader workers keep the rank's order, resume works, batches train a model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reader import GLOBAL_INDEX, PATCH_MASK, GatoReader, ReaderOptions  # noqa: E402
from reader.torch import GatoIterableDataset  # noqa: E402
from schemas import output as out  # noqa: E402
from schemas.vocab import Modality  # noqa: E402
from tests.reader.reader_fixtures import write_output  # noqa: E402

LENGTH = 32


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_output(tmp_path_factory.mktemp("out"), {("a", "x"): 40, ("b", "y"): 25}, length=LENGTH)


def test_dataloader_with_workers_yields_the_rank_stream_in_order(output_dir: str) -> None:
    reader = GatoReader(output_dir, ReaderOptions(seed=3, shuffle_buffer=8, prefetch=1))
    stream = reader.batches(4, rank=1, world_size=2)
    expected = [next(stream)[GLOBAL_INDEX].tolist() for _ in range(6)]
    stream.close()
    dataset = GatoIterableDataset(reader, 4, rank=1, world_size=2)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
    got = []
    for i, batch in enumerate(loader):
        got.append(batch[GLOBAL_INDEX].tolist())
        if i == 5:
            break
    assert got == expected
    assert batch[out.TOKENS].dtype == torch.int64 and isinstance(batch[out.EPISODE_ID], list)


def test_state_dict_resumes_with_other_workers_and_world_size(output_dir: str) -> None:
    options = ReaderOptions(seed=6, shuffle_buffer=8, prefetch=1)
    reader = GatoReader(output_dir, options)
    dataset = GatoIterableDataset(reader, 4, rank=0, world_size=2)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = dataset.state_dict(batches_consumed=3)
    del it
    assert state == reader.state_after(None, batches=3, batch_size=4, world_size=2)
    # What the two ranks consumed: their first 3 batches of 4.
    consumed = {int(g) for r in range(2) for b in itertools.islice(reader.batches(4, rank=r, world_size=2), 3)
                for g in b[GLOBAL_INDEX]}
    resumed = GatoIterableDataset(GatoReader(output_dir, options), 8, rank=0, world_size=1)
    resumed.load_state_dict(state)
    first = next(iter(torch.utils.data.DataLoader(resumed, batch_size=None, num_workers=0)))
    # One rank now: the next 8 samples of the global stream that neither rank consumed.
    unconsumed = [g for g in range(64) if g not in consumed][:8]
    assert first[GLOBAL_INDEX].tolist() == unconsumed
    reference = next(reader.batches(8, state=state))
    assert first[out.EPISODE_ID] == reference[out.EPISODE_ID].tolist()
    with pytest.raises(ValueError, match="belongs to another stream"):
        GatoIterableDataset(GatoReader(output_dir, ReaderOptions(seed=7)), 4).load_state_dict(state)


def test_batches_train_a_tiny_model_as_they_come(output_dir: str) -> None:
    reader = GatoReader(output_dir, ReaderOptions(seed=1, shuffle_buffer=8))
    vocab = reader.layout.vocab_size
    torch.manual_seed(0)
    embed = torch.nn.Embedding(vocab, 16)
    pos = torch.nn.Embedding(512, 16)
    patch = torch.nn.Linear(16 * 16 * 3, 16)
    head = torch.nn.Linear(16, vocab)
    params = [*embed.parameters(), *pos.parameters(), *patch.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    loader = torch.utils.data.DataLoader(GatoIterableDataset(reader, 8), batch_size=None)
    losses = []
    for step, batch in enumerate(loader):
        x = embed(batch[out.TOKENS]) + pos(batch[out.LOCAL_POSITIONS])
        # Image tokens take their patch embedding (normalized on the fly from uint8).
        pixels = ((batch[out.PATCH_PIXELS].float() / 255) * 2 - 1) / 4
        patch_emb = patch(pixels.flatten(2))  # [B, P, 16]
        image = batch[out.MODALITY] == int(Modality.IMAGE)
        x = x.clone()
        x[image] = patch_emb[batch[PATCH_MASK]]
        logits = head(x[:, :-1])
        target = batch[out.TOKENS][:, 1:]
        mask = batch[out.LOSS_MASK][:, 1:].float()
        per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        loss = (per_token * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step == 9:
            break
    assert len(losses) == 10 and np.isfinite(losses).all()
    assert losses[-1] < losses[0]


def test_state_dict_arguments_of_the_wrong_type_are_value_errors(output_dir: str) -> None:
    dataset = GatoIterableDataset(GatoReader(output_dir, ReaderOptions(seed=7)), 4)
    for consumed in ("3", 1.5, True, -1):
        with pytest.raises(ValueError, match="batches_consumed must be an integer >= 0"):
            dataset.state_dict(batches_consumed=consumed)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="load_state_dict: state 'x' is not a mapping"):
        dataset.load_state_dict("x")  # type: ignore[arg-type]
    state = dataset.state_dict(batches_consumed=2)
    with pytest.raises(ValueError, match=r"reader state mixture \[\] is not an object"):
        dataset.load_state_dict({**state, "mixture": []})


def test_index_columns_go_straight_into_embeddings(output_dir: str) -> None:
    # Issue 17: local_positions came as int16, which nn.Embedding rejects.
    batch = next(iter(GatoIterableDataset(GatoReader(output_dir, ReaderOptions(seed=2)), 4)))
    for name in (out.TOKENS, out.MODALITY, out.LOCAL_POSITIONS, out.PATCH_POSITIONS):
        assert batch[name].dtype == torch.int64, name
        table = torch.nn.Embedding(int(batch[name].max()) + 1, 3)
        assert table(batch[name]).shape == (*batch[name].shape, 3)
    assert batch[out.LOSS_MASK].dtype == torch.bool and batch[out.TIMESTEP].dtype == torch.int32
