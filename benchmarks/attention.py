"""Attention: the reference ``scaled_dot_product_attention`` against torch's math path.

Claims: attention.formula, attention.pattern-quadratic.

Both contenders get the same float32 q, k, v of shape [B, H, L, d] (B=4, H=8, d=64) on the same device,
no mask. Torch runs ``torch.nn.functional.scaled_dot_product_attention`` inside
``sdpa_kernel(SDPBackend.MATH)`` (the unfused path that, like the reference, materialises the L x L
pattern). The reference also returns the attention weights; that is part of its contract, so the
comparison includes it. Figures per L: median time ratio reference / torch, the peak memory of one call
of each, and how the reference's peak grows from one L to the next (exponent 2 = quadratic).
"""

import math
from collections.abc import Callable

import torch

from benchmarks._timing import Row, Settings, interleaved, median, peak_memory_bytes

NAME = "attention"
TIME_TARGET = 3.0
METHOD = (
    "reference SDPA vs torch F.scaled_dot_product_attention under sdpa_kernel(MATH), float32, no mask; "
    "rounds interleave both, medians; peak memory = max live bytes allocated during one call "
    "(CUDA: max_memory_allocated; CPU: torch.profiler memory events)"
)


def _torch_math() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """torch's SDPA pinned to the math backend where the selector exists (torch >= 2.3)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # older torch: the default dispatcher is all there is
        return lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v)

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    return run


def run(settings: Settings) -> list[Row]:
    """Time ratio and peak memory per L, then the reference's memory growth between successive L."""
    from transformer_conformance.reference.attention import scaled_dot_product_attention

    batch, heads, d = settings.pick((4, 8, 64), (4, 8, 64), (1, 2, 16))
    lengths: tuple[int, ...] = settings.pick((128, 512, 2048), (128, 512, 1024), (8, 16, 32))
    rounds = settings.rounds(full=5, quick=3)
    device = settings.device
    torch_sdpa = _torch_math()
    gen = torch.Generator(device="cpu").manual_seed(settings.seed)
    rows: list[Row] = []
    ref_peaks: list[int] = []
    for length in lengths:
        q, k, v = (torch.randn(batch, heads, length, d, generator=gen).to(device) for _ in range(3))

        def ref_call(q: torch.Tensor = q, k: torch.Tensor = k, v: torch.Tensor = v) -> object:
            with torch.no_grad():
                return scaled_dot_product_attention(q, k, v)

        def torch_call(q: torch.Tensor = q, k: torch.Tensor = k, v: torch.Tensor = v) -> object:
            with torch.no_grad():
                return torch_sdpa(q, k, v)

        times = interleaved({"reference": ref_call, "torch-math": torch_call}, device, rounds)
        t_ref, t_torch = median(times["reference"]), median(times["torch-math"])
        ratio = t_ref / t_torch
        with torch.no_grad():
            out_ref, _ = scaled_dot_product_attention(q, k, v)
            diff = float((out_ref - torch_sdpa(q, k, v)).abs().max())
        del out_ref
        mem_ref = peak_memory_bytes(ref_call, device)
        mem_torch = peak_memory_bytes(torch_call, device)
        ref_peaks.append(mem_ref)
        case = f"L={length}"
        extra = {"ref_s": t_ref, "torch_s": t_torch, "max_abs_diff": diff, "B": batch, "H": heads, "d": d}
        rows.append(
            Row(NAME, case, "time ref/torch-math", ratio, "x", f"<= {TIME_TARGET:g}x", ratio <= TIME_TARGET,
                f"ref {t_ref * 1e3:.2f} ms, torch {t_torch * 1e3:.2f} ms, max|diff| {diff:.1e}", extra)
        )
        pattern_mib = batch * heads * length * length * 4 / 2**20
        rows.append(Row(NAME, case, "peak memory ref", mem_ref / 2**20, "MiB",
                        note=f"one L x L float32 pattern: {pattern_mib:.3g} MiB"))
        rows.append(Row(NAME, case, "peak memory torch-math", mem_torch / 2**20, "MiB"))
    for (l0, m0), (l1, m1) in zip(zip(lengths, ref_peaks), zip(lengths[1:], ref_peaks[1:])):
        growth = m1 / m0 if m0 else float("inf")
        exponent = math.log(growth) / math.log(l1 / l0) if m0 and m1 else float("nan")
        rows.append(
            Row(NAME, f"L={l0}->{l1}", "ref memory growth exponent", exponent, "",
                "~2 (L^2)", 1.7 <= exponent <= 2.3,
                f"peak x{growth:.1f} for L x{l1 / l0:g} (quadratic: x{(l1 / l0) ** 2:g})")
        )
    return rows
