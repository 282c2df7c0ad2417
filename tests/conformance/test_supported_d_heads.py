"""A target declaring the head widths it supports (``Conventions.supported_d_heads``) is audited at those
widths only: every attention and MHA case is drawn (or fixed) at a declared width, so a kernel that
specialises on d_head = 64 is neither crashed by d_head = 5 nor left unaudited.
"""

from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor

from transformer_conformance.adapter import Capability, Conventions
from transformer_conformance.api import run_audit
from transformer_conformance.registry import all_checks
from transformer_conformance.targets.reference import ReferenceAdapter


class Only64(ReferenceAdapter):
    """The reference's attention and MHA, refusing any head width but 64 (as a specialised kernel)."""

    name = "only-d-head-64"
    capabilities = frozenset({Capability.ATTENTION, Capability.MHA})
    conventions = Conventions(supported_d_heads=(64,))
    seen: ClassVar[set[tuple[str, int]]] = set()

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        Only64.seen.add(("d_k", q.shape[-1]))
        Only64.seen.add(("d_v", v.shape[-1]))
        if q.shape[-1] != 64 or v.shape[-1] != 64:
            raise ValueError(f"kernel supports d_head 64 only, got d_k={q.shape[-1]} d_v={v.shape[-1]}")
        return super().attention(q, k, v, mask=mask, is_causal=is_causal)

    def build_mha(
        self, d_model: int, num_heads: int, state: dict[str, Tensor] | None, device: Any, dtype: torch.dtype
    ) -> Any:
        Only64.seen.add(("mha d_head", d_model // num_heads))
        if d_model // num_heads != 64:
            raise ValueError(f"layer supports d_head 64 only, got d_model={d_model} num_heads={num_heads}")
        return super().build_mha(d_model, num_heads, state, device, dtype)


@pytest.mark.claim("arch.notes-default")
def test_target_declaring_d_head_64_is_audited_at_64() -> None:
    Only64.seen.clear()
    checks = [c.id for c in all_checks() if c.needs <= Only64.capabilities]
    report = run_audit([Only64()], profile="quick", check=checks, in_process=True)  # type: ignore[list-item]
    got = {r.check: (r.status, r.message) for r in report.results}
    bad = {c: s for c, s in got.items() if s[0] not in ("pass", "not-applicable")}
    assert not bad, bad
    assert Only64.seen == {("d_k", 64), ("d_v", 64), ("mha d_head", 64)}, Only64.seen
    passed = {c for c, (s, _) in got.items() if s == "pass"}
    assert {"attention.differential", "mha.differential", "mask.causal.differential"} <= passed, got
    status, message = got["attention.shapes.value-width"]
    assert status == "not-applicable" and "supported_d_heads" in message, got["attention.shapes.value-width"]


class Only32Or64(Only64):
    """Head widths 32 and 64 (d_v may differ from d_k)."""

    name = "d-head-32-or-64"
    conventions = Conventions(supported_d_heads=(64, 32))

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        Only64.seen.add(("d_k", q.shape[-1]))
        Only64.seen.add(("d_v", v.shape[-1]))
        if q.shape[-1] not in (32, 64) or v.shape[-1] not in (32, 64):
            raise ValueError(f"kernel supports d_head 32 and 64 only, got {q.shape[-1]}, {v.shape[-1]}")
        return ReferenceAdapter.attention(self, q, k, v, mask=mask, is_causal=is_causal)


@pytest.mark.claim("attention.shapes")
def test_two_declared_widths_cover_a_value_width_other_than_the_key_width() -> None:
    Only64.seen.clear()
    checks = ["attention.shapes", "attention.shapes.value-width", "attention.differential"]
    report = run_audit([Only32Or64()], profile="quick", check=checks, in_process=True)
    got = {r.check: (r.status, r.message) for r in report.results}
    assert {s for s, _ in got.values()} == {"pass"}, got
    assert Only64.seen == {("d_k", 32), ("d_k", 64), ("d_v", 32), ("d_v", 64)}, Only64.seen
