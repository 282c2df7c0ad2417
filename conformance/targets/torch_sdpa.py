"""``torch.nn.functional.scaled_dot_product_attention``, one target per backend.

Targets: ``torch-sdpa-math``, ``torch-sdpa-flash``, ``torch-sdpa-efficient``, ``torch-sdpa-cudnn``;
each pins its backend with ``torch.nn.attention.sdpa_kernel`` so no silent fallback hides a backend's
behaviour (an input the backend cannot take raises, and the check fails RAISED).

Declared conventions (measured with torch 2.13 on the CPU):

- boolean ``attn_mask``: True = may attend (the project's polarity);
- ``is_causal=True`` is aligned top-left (query i sees keys 0..i even when num_q != num_k);
- a fully masked row gives an all-zero output (the math backend's safe softmax; the CPU flash kernel
  agrees);
- no attention weights are returned;
- an additive float mask is accepted (``attention_additive``, used by mask.boolean-equals-additive).

Availability: the math and flash backends exist on the CPU; the memory-efficient and cuDNN backends
are CUDA-only. On a machine without CUDA those two targets are still known by name but declare no
capability, so every check is reported not-applicable, and ``declaration_problems`` says why. On the
CUDA flash/cuDNN kernels only float16/bfloat16 exist (efficient: float32 too); the declared dtypes
follow what this machine offers. The CUDA behaviour of fully masked rows has not been measured here.
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from transformer_conformance.adapter import Adapter, Capability, Conventions

ALL_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
HALF_DTYPES = (torch.float16, torch.bfloat16)


def backend_devices(backend: SDPBackend) -> tuple[str, ...]:
    """Device types on which this torch build (and machine) offers ``backend``."""
    cuda = torch.cuda.is_available()
    if backend == SDPBackend.MATH:
        return ("cpu", "cuda") if cuda else ("cpu",)
    if backend == SDPBackend.FLASH_ATTENTION:
        flash_cuda = cuda and torch.backends.cuda.is_flash_attention_available()
        return ("cpu", "cuda") if flash_cuda else ("cpu",)
    if backend == SDPBackend.EFFICIENT_ATTENTION:
        return ("cuda",) if cuda else ()
    cudnn = cuda and bool(torch.backends.cudnn.is_available())  # type: ignore[no-untyped-call]
    return ("cuda",) if cudnn else ()


def backend_dtypes(backend: SDPBackend) -> tuple[torch.dtype, ...]:
    """The dtypes declared for ``backend``: the CUDA kernels' set when CUDA is present."""
    cuda = torch.cuda.is_available()
    if backend == SDPBackend.MATH:
        return ALL_DTYPES
    if backend == SDPBackend.FLASH_ATTENTION:
        return HALF_DTYPES if cuda else ALL_DTYPES
    if backend == SDPBackend.EFFICIENT_ATTENTION:
        return (torch.float32, *HALF_DTYPES)
    return HALF_DTYPES


def sdpa_mask_and_causal(
    q: Tensor, k: Tensor, mask: Tensor | None, is_causal: bool
) -> tuple[Tensor | None, bool]:
    """The ``(attn_mask, is_causal)`` pair SDPA accepts: an explicit keep-mask together with
    ``is_causal=True`` becomes their conjunction (top-left causal), since torch refuses both at once."""
    if mask is None or not is_causal:
        return mask, is_causal
    causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    return mask & causal, False


class TorchSDPAAdapter(Adapter):
    """``F.scaled_dot_product_attention`` pinned to one backend.

    Claims: attention.formula, mask.causal.alignment, attention.fully-masked-row.
    """

    def __init__(self, backend: SDPBackend, name: str) -> None:
        self.backend = backend
        self.name = name
        self.devices = backend_devices(backend)
        self.capabilities = frozenset({Capability.ATTENTION}) if self.devices else frozenset()
        self.conventions = Conventions(
            mask_polarity="true_attends",
            causal_alignment="top-left",
            fully_masked_row="zero",
            returns_weights=False,
            dtypes=backend_dtypes(backend),
        )

    def declaration_problems(self) -> list[str]:
        """Base problems plus a note when the backend does not exist on this machine."""
        problems = super().declaration_problems()
        if not self.devices:
            problems.append(
                f"backend {self.backend.name} is not available on this machine (CUDA-only): "
                "no capability declared, every check is not-applicable"
            )
        return problems

    def _run(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        if q.device.type not in self.devices:
            raise RuntimeError(
                f"target {self.name!r}: backend {self.backend.name} has no kernel on device "
                f"type {q.device.type!r} (available on: {list(self.devices) or 'none'})"
            )
        with sdpa_kernel([self.backend]):
            out: Tensor = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return out

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor | None]:
        """SDPA with a boolean keep-mask (True = attend) and/or ``is_causal`` (top-left); no weights.
        Both at once are passed as their conjunction (torch refuses an explicit ``attn_mask`` together
        with ``is_causal=True``, found by the drawn mask layouts of ``mask.causal.differential``)."""
        mask, is_causal = sdpa_mask_and_causal(q, k, mask, is_causal)
        return self._run(q, k, v, mask, is_causal), None

    def attention_additive(self, q: Tensor, k: Tensor, v: Tensor, *, bias: Tensor) -> tuple[Tensor, None]:
        """SDPA with an additive float mask (0 = attend, -inf = masked)."""
        return self._run(q, k, v, bias, False), None


def make_math() -> TorchSDPAAdapter:
    """Factory for ``torch-sdpa-math``."""
    return TorchSDPAAdapter(SDPBackend.MATH, "torch-sdpa-math")


def make_flash() -> TorchSDPAAdapter:
    """Factory for ``torch-sdpa-flash``."""
    return TorchSDPAAdapter(SDPBackend.FLASH_ATTENTION, "torch-sdpa-flash")


def make_efficient() -> TorchSDPAAdapter:
    """Factory for ``torch-sdpa-efficient``."""
    return TorchSDPAAdapter(SDPBackend.EFFICIENT_ATTENTION, "torch-sdpa-efficient")


def make_cudnn() -> TorchSDPAAdapter:
    """Factory for ``torch-sdpa-cudnn``."""
    return TorchSDPAAdapter(SDPBackend.CUDNN_ATTENTION, "torch-sdpa-cudnn")
