"""The table-driven bad-input test shared by tests/reference/test_bad_input_*.py: each case is
(name, call, accepted error types, substrings the message must contain)."""

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tests.conftest import requires_shape_checks

VALUE = (ValueError,)  # ReferenceInputError
EITHER = (ValueError, TypeError)  # caught by require_* or, first, by jaxtyping/beartype
SHAPE = (TypeError,)  # jaxtyping's TypeCheckError only

Case = tuple[str, Callable[[], Any], tuple[type[BaseException], ...], list[str]]


def case_params(cases: Sequence[Case]) -> list[Any]:
    """pytest params of ``cases``; shape-only cases skip when run-time shape checks are off."""
    return [
        pytest.param(call, errors, needles, id=name, marks=[requires_shape_checks] if errors == SHAPE else [])
        for name, call, errors, needles in cases
    ]


def assert_clear_error(
    call: Callable[[], Any], errors: tuple[type[BaseException], ...], needles: list[str]
) -> None:
    """``call()`` raises one of ``errors`` and its message names every one of ``needles``."""
    with pytest.raises(errors) as info:
        call()
    message = str(info.value)
    missing = [n for n in needles if n not in message]
    assert not missing, f"message lacks {missing}: {message}"
