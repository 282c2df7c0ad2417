"""Run-time contracts shared by every reference module.

``checked`` applies jaxtyping's shape checks with beartype as the type checker. Value checks that
shapes cannot express go through ``require_*`` helpers, which raise ``ReferenceInputError`` naming
the argument, the expected and the actual value. Both stay active unless ``JAXTYPING_DISABLE=1``
(that switch only disables the jaxtyping/beartype layer; ``require_*`` always runs).
"""

from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from beartype import beartype
from jaxtyping import jaxtyped

F = TypeVar("F", bound=Callable[..., object])


def checked(fn: F) -> F:
    """Decorate ``fn`` with jaxtyping shape checks, using beartype for the types."""
    wrapped: F = jaxtyped(typechecker=beartype)(fn)
    return wrapped


class ReferenceInputError(ValueError):
    """Bad input to a reference function: the message names argument, expected and actual."""


def require(condition: bool, argument: str, expected: str, actual: object) -> None:
    """Raise ``ReferenceInputError`` unless ``condition`` holds."""
    if not condition:
        raise ReferenceInputError(f"argument '{argument}': expected {expected}, got {actual}")


def require_floating(argument: str, tensor: torch.Tensor) -> None:
    """The tensor must have a floating dtype."""
    require(tensor.is_floating_point(), argument, "a floating-point dtype", tensor.dtype)


def require_same_device(**tensors: torch.Tensor | None) -> None:
    """All given tensors live on one device."""
    present = {name: t for name, t in tensors.items() if t is not None}
    devices = {t.device for t in present.values()}
    if len(devices) > 1:
        listing = ", ".join(f"{name} on {t.device}" for name, t in present.items())
        first = next(iter(present))
        raise ReferenceInputError(
            f"argument '{first}' and the others: expected one device for all tensors, got {listing}"
        )


def require_same_dtype(**tensors: torch.Tensor | None) -> None:
    """All given tensors share one dtype."""
    present = {name: t for name, t in tensors.items() if t is not None}
    dtypes = {t.dtype for t in present.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{name}: {t.dtype}" for name, t in present.items())
        first = next(iter(present))
        raise ReferenceInputError(f"argument '{first}' and the others: expected one dtype, got {listing}")


def require_token_ids(argument: str, ids: torch.Tensor, vocab_size: int) -> None:
    """Token ids are integers in ``[0, vocab_size)``."""
    require(not ids.is_floating_point() and ids.dtype != torch.bool, argument, "an integer dtype", ids.dtype)
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        require(
            lo >= 0 and hi < vocab_size, argument, f"token ids in [0, {vocab_size})", f"ids in [{lo}, {hi}]"
        )


def require_positive(argument: str, values: Iterable[tuple[str, int]]) -> None:
    """Every named size is a positive integer."""
    for name, value in values:
        require(value > 0, f"{argument}.{name}" if argument else name, "a positive integer", value)
