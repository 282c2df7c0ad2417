"""Next-token loss: the shift, padding ignored, mean over counted tokens; the original sequence as target."""

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from tests.reference import mutants_pointwise as mut
from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.loss import next_token_loss
from transformer_conformance.reference.tolerance import assert_close

FIXTURE_OK = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)
Loss = Callable[..., Tensor]
PAD = 0


def loop_loss(logits: Tensor, ids: Tensor, pad_id: int | None) -> float:
    """-log p(ids[b, t + 1] | logits[b, t]), averaged over non-pad targets, with plain Python floats."""
    terms = []
    rows, ids_list = logits.double().tolist(), ids.tolist()
    for b, seq in enumerate(ids_list):
        for t in range(len(seq) - 1):
            target = seq[t + 1]
            if pad_id is not None and target == pad_id:
                continue
            row = rows[b][t]
            top = max(row)
            log_z = top + math.log(math.fsum(math.exp(v - top) for v in row))
            terms.append(log_z - row[target])
    return math.fsum(terms) / len(terms)


def make_batch(
    batch: int, length: int, vocab: int, seed: int, device: str | torch.device = "cpu"
) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=gen, dtype=torch.float64) * 2.0
    ids = torch.randint(1, vocab, (batch, length), generator=gen)
    return logits.to(device), ids.to(device)


def pad_tail(ids: Tensor, lengths: list[int]) -> Tensor:
    padded = ids.clone()
    for b, n in enumerate(lengths):
        padded[b, n:] = PAD
    return padded


def check_loss(loss: Loss, logits: Tensor, ids: Tensor, pad_id: int | None) -> None:
    got = loss(logits, ids, pad_id=pad_id)
    assert got.shape == (), f"shape {tuple(got.shape)}"
    expected = torch.tensor(loop_loss(logits.cpu(), ids.cpu(), pad_id), dtype=torch.float64)
    assert_close(got.cpu(), expected, "loss vs Python loop")


@pytest.mark.claim("loss.shifted-cross-entropy", "loss.ignores-padding")
@FIXTURE_OK
@given(
    batch=st.integers(1, 3),
    length=st.integers(2, 7),
    vocab=st.integers(2, 9),
    seed=st.integers(0, 2**16),
    use_pad=st.booleans(),
    data=st.data(),
)
def test_loss_matches_loop(
    device: torch.device, batch: int, length: int, vocab: int, seed: int, use_pad: bool, data: st.DataObject
) -> None:
    logits, ids = make_batch(batch, length, vocab, seed, device)
    lengths = data.draw(st.lists(st.integers(2, length), min_size=batch, max_size=batch))
    padded = pad_tail(ids, lengths)
    check_loss(next_token_loss, logits, padded, PAD if use_pad else None)
    assert next_token_loss(logits.float(), padded, pad_id=PAD).dtype == torch.float32


@pytest.mark.claim("loss.shifted-cross-entropy", "loss.ignores-padding")
@pytest.mark.parametrize("mutant", [mut.loss_counts_padding, mut.loss_pad_in_denominator, mut.loss_unshifted])
def test_loss_check_rejects_mutants(mutant: Loss) -> None:
    logits, ids = make_batch(2, 6, 5, 0)
    with pytest.raises(AssertionError):
        check_loss(mutant, logits, pad_tail(ids, [3, 6]), PAD)


def check_ignores_padding(loss: Loss, logits: Tensor, ids: Tensor) -> None:
    """Logits at positions whose target is pad, and extra pad columns, leave the loss unchanged."""
    base = loss(logits, ids, pad_id=PAD)
    scribbled = logits.clone()
    targets_pad = ids[:, 1:] == PAD
    scribbled[:, :-1][targets_pad] = 50.0 * torch.arange(logits.shape[-1], dtype=logits.dtype)
    assert_close(loss(scribbled, ids, pad_id=PAD), base.double(), "after editing logits of pad targets")
    longer_ids = torch.cat([ids, torch.full((ids.shape[0], 3), PAD)], dim=1)
    longer_logits = torch.cat(
        [logits, torch.randn(ids.shape[0], 3, logits.shape[-1], dtype=logits.dtype)], dim=1
    )
    assert_close(loss(longer_logits, longer_ids, pad_id=PAD), base.double(), "after appending pad columns")


@pytest.mark.claim("loss.ignores-padding")
def test_ignores_padding() -> None:
    logits, ids = make_batch(3, 6, 7, 4)
    check_ignores_padding(next_token_loss, logits, pad_tail(ids, [2, 4, 6]))


@pytest.mark.claim("loss.ignores-padding")
@pytest.mark.parametrize("mutant", [mut.loss_counts_padding, mut.loss_pad_in_denominator])
def test_padding_check_rejects_mutants(mutant: Loss) -> None:
    logits, ids = make_batch(3, 6, 7, 4)
    with pytest.raises(AssertionError):
        check_ignores_padding(mutant, logits, pad_tail(ids, [2, 4, 6]))


def test_all_pad_batch_is_an_error_not_nan() -> None:
    logits, ids = make_batch(2, 4, 5, 0)
    with pytest.raises(ReferenceInputError, match=r"'ids'.*pad_id=0"):
        next_token_loss(logits, pad_tail(ids, [1, 1]), pad_id=PAD)


# --------------------------------------------------------------------------- the notes' unshifted loss


def copy_model_logits(ids: Tensor, vocab: int) -> Tensor:
    """A "model" putting all its mass on the token it reads (position t: allowed causally)."""
    return 40.0 * torch.nn.functional.one_hot(ids, vocab).double()


def check_copy_model_not_rewarded(loss: Loss, ids: Tensor, vocab: int) -> None:
    """A loss that trains next-token prediction must not give a copy model near-zero loss."""
    value = float(loss(copy_model_logits(ids, vocab), ids, pad_id=None))
    assert value > 1.0, f"copy model loss {value}: the loss rewards copying the input"


@pytest.mark.claim("loss.unshifted-as-stated", "loss.shifted-cross-entropy")
def test_loss_against_the_original_sequence_needs_the_shift() -> None:
    vocab = 6
    ids = torch.tensor([[1, 2, 3, 4, 5, 1], [5, 4, 3, 2, 1, 2]])  # no token repeats its predecessor
    # The targets are the original sequence itself, read one position ahead (the condition).
    logits = torch.randn(2, 6, vocab, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    by_hand = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1))
    assert_close(next_token_loss(logits, ids, pad_id=None), by_hand, "loss vs the shifted original sequence")
    unshifted = float(mut.loss_unshifted(copy_model_logits(ids, vocab), ids, pad_id=None))
    # Without the shift: a perfect score (zero loss) without predicting anything
    assert_close(torch.tensor(unshifted, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64), "loss")
    check_copy_model_not_rewarded(next_token_loss, ids, vocab)  # the shifted loss is about 40 nats


@pytest.mark.claim("loss.unshifted-as-stated")
def test_copy_model_check_rejects_missing_shift() -> None:
    ids = torch.tensor([[1, 2, 3, 4, 5, 1]])
    with pytest.raises(AssertionError):
        check_copy_model_not_rewarded(mut.loss_unshifted, ids, 6)
