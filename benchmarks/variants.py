"""Architecture variants: rotary attention and grouped-query attention beside the paths they extend.

Claims: rotary.relative-dot-product, gqa.repeat-equivalence (figures only).

Rotary: on float32 q, k, v of shape [B, H, L, d] (B=4, H=8, d=64), the reference's ``apply_rotary`` on q
and k followed by its ``scaled_dot_product_attention`` (causal) against plain torch doing the same work
(Hugging Face Llama's ``rotate_half`` rotation, then SDPA pinned to the math path), and against the
reference attention without rotation: the ratios show what the reference costs over torch and what the
rotation adds to the reference. GQA: 8 query heads over 2 KV
heads; the reference's ``grouped_attention`` against the reference's MHA on explicitly repeated KV heads
and against torch's SDPA (math) with ``enable_gqa=True``. Rounds interleave the contenders; medians.
"""

from collections.abc import Callable

import torch

from benchmarks._timing import Row, Settings, interleaved, median

NAME = "variants"
METHOD = (
    "float32, causal; rotary: reference apply_rotary + reference SDPA vs torch rotate_half rotation + "
    "SDPA(MATH) and vs reference SDPA without rotation; GQA 8 query / 2 KV heads: reference "
    "grouped_attention vs reference SDPA on repeat_interleave'd KV (MHA) and vs torch SDPA(MATH, "
    "enable_gqa); medians of interleaved rounds"
)


def _math(fn: Callable[[], object]) -> object:
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # older torch: the default dispatcher
        return fn()
    with sdpa_kernel(SDPBackend.MATH):
        return fn()


def _rotate_half_rope(x: torch.Tensor, pos: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Rotary as Hugging Face Llama computes it (float32 angles, ``x cos + rotate_half(x) sin``)."""
    d = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d))
    angles = pos.float()[:, None] * inv_freq[None, :]
    emb = torch.cat([angles, angles], dim=-1)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * emb.cos().to(x.dtype) + torch.cat([-x2, x1], dim=-1) * emb.sin().to(x.dtype)


def _ratio_row(case: str, figure: str, times: dict[str, list[float]], num: str, den: str, extra: dict) -> Row:
    t_num, t_den = median(times[num]), median(times[den])
    return Row(
        NAME,
        case,
        figure,
        t_num / t_den,
        "x",
        note=f"{num} {t_num * 1e3:.2f} ms, {den} {t_den * 1e3:.2f} ms",
        extra={**extra, f"{num}_s": t_num, f"{den}_s": t_den},
    )


def run(settings: Settings) -> list[Row]:
    """Rotary and GQA ratios per sequence length."""
    from transformer_conformance.reference.attention import scaled_dot_product_attention
    from transformer_conformance.reference.grouped import grouped_attention, repeat_kv
    from transformer_conformance.reference.masks import causal_mask
    from transformer_conformance.reference.rotary import apply_rotary

    batch, heads, kv_heads, d = settings.pick((4, 8, 2, 64), (4, 8, 2, 64), (1, 4, 2, 16))
    lengths: tuple[int, ...] = settings.pick((128, 512, 1024), (128, 512), (8, 16))
    rounds = settings.rounds(full=5, quick=3)
    device = settings.device
    gen = torch.Generator(device="cpu").manual_seed(settings.seed)
    rows: list[Row] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    for length in lengths:
        case = f"L={length}"
        extra = {"B": batch, "H": heads, "KV": kv_heads, "d": d}
        q, k, v = (torch.randn(batch, heads, length, d, generator=gen).to(device) for _ in range(3))
        pos = torch.arange(length, device=device)
        keep = causal_mask(length, length, device=device)

        def ref_rope(
            q: torch.Tensor = q,
            k: torch.Tensor = k,
            v: torch.Tensor = v,
            pos: torch.Tensor = pos,
            keep: torch.Tensor = keep,
        ) -> object:
            with torch.no_grad():
                return scaled_dot_product_attention(apply_rotary(q, pos), apply_rotary(k, pos), v, keep)

        def ref_plain(
            q: torch.Tensor = q, k: torch.Tensor = k, v: torch.Tensor = v, keep: torch.Tensor = keep
        ) -> object:
            with torch.no_grad():
                return scaled_dot_product_attention(q, k, v, keep)

        def torch_rope(
            q: torch.Tensor = q, k: torch.Tensor = k, v: torch.Tensor = v, pos: torch.Tensor = pos
        ) -> object:
            with torch.no_grad():
                qr, kr = _rotate_half_rope(q, pos), _rotate_half_rope(k, pos)
                return _math(lambda: sdpa(qr, kr, v, is_causal=True))

        times = interleaved(
            {"ref-rope": ref_rope, "ref-plain": ref_plain, "torch-math": torch_rope}, device, rounds
        )
        rows.append(_ratio_row(case, "rope attn ref/torch-math", times, "ref-rope", "torch-math", extra))
        rows.append(_ratio_row(case, "rope attn ref/ref-no-rope", times, "ref-rope", "ref-plain", extra))

        kg, vg = k[:, :kv_heads].contiguous(), v[:, :kv_heads].contiguous()

        def ref_gqa(
            q: torch.Tensor = q, kg: torch.Tensor = kg, vg: torch.Tensor = vg, keep: torch.Tensor = keep
        ) -> object:
            with torch.no_grad():
                return grouped_attention(q, kg, vg, keep)

        def ref_repeated(
            q: torch.Tensor = q, kg: torch.Tensor = kg, vg: torch.Tensor = vg, keep: torch.Tensor = keep
        ) -> object:
            with torch.no_grad():
                return scaled_dot_product_attention(q, repeat_kv(kg, heads), repeat_kv(vg, heads), keep)

        def torch_gqa(q: torch.Tensor = q, kg: torch.Tensor = kg, vg: torch.Tensor = vg) -> object:
            with torch.no_grad():
                return _math(lambda: sdpa(q, kg, vg, is_causal=True, enable_gqa=True))

        times = interleaved(
            {"ref-gqa": ref_gqa, "ref-mha-repeated": ref_repeated, "torch-gqa": torch_gqa}, device, rounds
        )
        rows.append(_ratio_row(case, "gqa ref/ref-repeated-mha", times, "ref-gqa", "ref-mha-repeated", extra))
        rows.append(_ratio_row(case, "gqa ref/torch-math-gqa", times, "ref-gqa", "torch-gqa", extra))
    return rows
