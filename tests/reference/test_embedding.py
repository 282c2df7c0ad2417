"""Token embedding, embedding + positions, output projection and weight tying."""

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from tests.reference import mutants_pointwise as mut
from transformer_conformance.reference.checking import ReferenceInputError
from transformer_conformance.reference.embedding import OutputProjection, TokenEmbedding, one_hot_embed
from transformer_conformance.reference.positional import sinusoidal_encoding
from transformer_conformance.reference.tolerance import assert_close

FIXTURE_OK = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)


def random_ids(vocab: int, batch: int, length: int, seed: int, device: torch.device) -> Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed)).to(device)


# --------------------------------------------------------------------------- lookup == one-hot


def check_lookup_equals_one_hot(
    lookup: Callable[[Tensor, Tensor], Tensor], ids: Tensor, weight: Tensor
) -> None:
    """``lookup(ids, weight)`` equals the one-hot product, built here from an identity matrix."""
    eye = torch.eye(weight.shape[0], dtype=torch.float64, device=weight.device)
    expected = eye[ids] @ weight.detach().to(torch.float64)
    assert_close(lookup(ids, weight), expected, "embedding vs one-hot @ E")


@pytest.mark.claim("embedding.lookup-equals-one-hot", "embedding.shapes")
@FIXTURE_OK
@given(
    vocab=st.integers(1, 40),
    d=st.integers(1, 12),
    batch=st.integers(1, 3),
    length=st.integers(0, 6),
    seed=st.integers(0, 2**16),
)
def test_lookup_equals_one_hot(
    device: torch.device, vocab: int, d: int, batch: int, length: int, seed: int
) -> None:
    emb = TokenEmbedding(vocab, d).to(device)
    ids = random_ids(vocab, batch, length, seed, device)
    out = emb(ids)
    assert out.shape == (batch, length, d)
    check_lookup_equals_one_hot(lambda i, w: emb(i), ids, emb.weight)
    check_lookup_equals_one_hot(one_hot_embed, ids, emb.weight)


@pytest.mark.claim("embedding.lookup-equals-one-hot")
def test_one_hot_check_rejects_off_by_one_lookup() -> None:
    emb = TokenEmbedding(10, 4)
    with pytest.raises(AssertionError):
        check_lookup_equals_one_hot(mut.one_hot_embed_off_by_one, torch.tensor([[0, 3, 9]]), emb.weight)


@pytest.mark.claim("embedding.shapes")
def test_scaled_embedding_and_base_width(device: torch.device) -> None:
    emb = TokenEmbedding(37, 512, scale=True).to(device)
    ids = random_ids(37, 2, 5, 0, device)
    out = emb(ids)
    assert out.shape == (2, 5, 512)
    assert_close(out, emb.weight.detach().double()[ids] * math.sqrt(512), "scaled embedding")


@pytest.mark.claim("embedding.shapes")
def test_ids_out_of_vocab_are_rejected() -> None:
    emb = TokenEmbedding(10, 4)
    for bad in (10, -1):
        with pytest.raises(ReferenceInputError, match=r"'ids'.*\[0, 10\)"):
            emb(torch.tensor([[1, bad]]))


# --------------------------------------------------------------------------- embedding + positions


def check_plus_positional(
    combine: Callable[[Tensor, Tensor], Tensor], emb: TokenEmbedding, ids: Tensor
) -> None:
    """Input row (b, t) is E[ids[b, t]] + PE[t], of width d_model, written out with loops."""
    batch, length = ids.shape
    pe = sinusoidal_encoding(length, emb.d_model, dtype=torch.float64, device=ids.device)
    x = combine(emb(ids).double(), pe)
    assert x.shape == (batch, length, emb.d_model), f"shape {tuple(x.shape)}"
    weight = emb.weight.detach().double()
    for b in range(batch):
        for t in range(length):
            assert_close(x[b, t], weight[int(ids[b, t])] + pe[t], f"input row ({b}, {t})")


@pytest.mark.claim("embedding.plus-positional")
def test_plus_positional(device: torch.device) -> None:
    emb = TokenEmbedding(13, 8).to(device)
    check_plus_positional(lambda tokens, positions: tokens + positions, emb, random_ids(13, 2, 5, 1, device))


@pytest.mark.claim("embedding.plus-positional")
def test_plus_positional_check_rejects_concatenation() -> None:
    emb = TokenEmbedding(13, 8)
    with pytest.raises(AssertionError):
        check_plus_positional(mut.add_positions_by_concat, emb, random_ids(13, 2, 5, 1, torch.device("cpu")))


# --------------------------------------------------------------------------- output projection


def check_projection(probabilities: Callable[[Tensor], Tensor], proj: OutputProjection, x: Tensor) -> None:
    """Logits are x @ W^T; probabilities are non-negative and each position's sum over the vocabulary is 1."""
    logits = proj(x)
    assert logits.shape == (*x.shape[:-1], proj.vocab_size)
    assert_close(logits, x.double() @ proj.weight.detach().double().T, "logits")
    probs = probabilities(x)
    assert probs.shape == logits.shape
    assert bool((probs >= 0).all())
    assert_close(probs.sum(dim=-1), torch.ones(x.shape[:-1], dtype=torch.float64), "probability sums")


@pytest.mark.claim("output.projection")
@FIXTURE_OK
@given(vocab=st.integers(2, 50), d=st.integers(1, 12), length=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_projection_gives_distributions(
    device: torch.device, vocab: int, d: int, length: int, seed: int
) -> None:
    proj = OutputProjection(d, vocab).to(device)
    x = torch.randn(2, length, d, generator=torch.Generator().manual_seed(seed)).to(device)
    check_projection(proj.probabilities, proj, x)


@pytest.mark.claim("output.projection")
def test_projection_check_rejects_softmax_over_wrong_axis() -> None:
    proj = OutputProjection(4, 7)
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError):
        check_projection(lambda h: mut.probabilities_wrong_axis(proj(h)), proj, x)


def check_tied(emb: TokenEmbedding, proj: torch.nn.Module) -> None:
    """Changing the embedding matrix changes the logits the same way; gradients meet in one tensor."""
    x = torch.randn(2, 3, emb.d_model, generator=torch.Generator().manual_seed(2)).to(emb.weight.device)
    with torch.no_grad():
        emb.weight.mul_(-2.0).add_(0.5)
    assert_close(proj(x), x.double() @ emb.weight.detach().double().T, "logits after editing the embedding")
    emb.zero_grad(set_to_none=True)
    ids = torch.tensor([[0, 1]], device=emb.weight.device)
    (emb(ids).sum() + proj(x).sum()).backward()
    assert emb.weight.grad is not None
    expected = torch.zeros(emb.weight.shape, dtype=torch.float64, device=emb.weight.device)
    expected[0] += 1.0  # the lookup of ids 0 and 1
    expected[1] += 1.0
    expected += x.double().reshape(-1, emb.d_model).sum(dim=0)  # d(sum x W^T)/dW: every row gets sum of x
    assert_close(emb.weight.grad, expected, "gradient reaching the shared matrix from both uses")
    owned = {id(p) for p in proj.parameters()}
    assert owned <= {id(emb.weight)}, "the projection owns a weight of its own"


@pytest.mark.claim("output.tied-embedding")
def test_tied_projection_shares_the_parameter(device: torch.device) -> None:
    emb = TokenEmbedding(11, 6).to(device)
    proj = OutputProjection(6, 11, tied_to=emb)
    assert proj.weight is emb.weight
    model = torch.nn.ModuleDict({"embed": emb, "lm_head": proj})
    assert len(list(model.parameters())) == 1
    check_tied(emb, proj)


@pytest.mark.claim("output.tied-embedding")
def test_tied_check_rejects_a_copied_weight() -> None:
    emb = TokenEmbedding(11, 6)
    with pytest.raises(AssertionError):
        check_tied(emb, mut.CopiedOutputProjection(emb.weight))


def test_tied_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ReferenceInputError, match="'tied_to'"):
        OutputProjection(6, 12, tied_to=TokenEmbedding(11, 6))
