"""What crosses the boundary between the audit and a target's worker process, and how.

Tensors travel as copies (dtype, shape, device, raw bytes), never as shared memory, so neither side
can see the other's later writes. The audit unpickles what a worker sends with an allow-list of
classes (plain values, tensors, handles and failure descriptions), so a target cannot make the audit
build an object of its choosing.
"""

import io
import pickle
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def pack_tensor(tensor: Tensor) -> tuple[str, tuple[int, ...], str, bytes]:
    """(dtype name, shape, device, bytes) of a dense tensor: a copy of its values only."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape), str(tensor.device), data


def unpack_tensor(dtype: str, shape: tuple[int, ...], device: str, data: bytes) -> Tensor:
    """The inverse of :func:`pack_tensor`: a fresh plain tensor owning its memory."""
    kind = getattr(torch, dtype)
    if not isinstance(kind, torch.dtype):
        raise pickle.UnpicklingError(f"not a dtype: {dtype!r}")
    if data:
        flat = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(kind)
        tensor = flat.reshape(shape)
    else:
        tensor = torch.empty(shape, dtype=kind)
    return tensor if device == "cpu" else tensor.to(device)


@dataclass(frozen=True)
class HandleRef:
    """An object that stays in the worker (a built model, a cache, a layer), named by its number."""

    id: int
    type_name: str
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class GeneratorState:
    """A ``torch.Generator`` argument: its device and state; the new state comes back after the call."""

    index: int
    device: str
    state: Tensor


class _Pickler(pickle.Pickler):
    """Packs tensors by value; ``extra`` handles further types (or returns ``NotImplemented``)."""

    def __init__(self, buffer: io.BytesIO, extra: Any) -> None:
        super().__init__(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        self.extra = extra

    def reducer_override(self, obj: Any) -> Any:
        if self.extra is not None:
            out = self.extra(obj)
            if out is not NotImplemented:
                return out
        if isinstance(obj, Tensor):
            return unpack_tensor, pack_tensor(obj)
        return NotImplemented


def dumps(obj: Any, reducer: Any = None) -> bytes:
    """Pickle ``obj`` with tensors packed by value; ``reducer`` handles further types (or returns
    ``NotImplemented``)."""
    buffer = io.BytesIO()
    _Pickler(buffer, reducer).dump(obj)
    return buffer.getvalue()


_ALLOWED = {
    ("builtins", name)
    for name in (
        "tuple",
        "list",
        "dict",
        "set",
        "frozenset",
        "int",
        "float",
        "complex",
        "bool",
        "str",
        "bytes",
        "bytearray",
        "slice",
        "range",
    )
}
_ALLOWED |= {
    ("torch", "device"),
    ("torch", "Size"),
    ("collections", "OrderedDict"),
    ("transformer_conformance.wire", "unpack_tensor"),
    ("transformer_conformance.wire", "HandleRef"),
    ("transformer_conformance.wire", "GeneratorState"),
    ("transformer_conformance.adapter", "Capability"),
    ("transformer_conformance.adapter", "Conventions"),
    ("transformer_conformance.reference.config", "TransformerConfig"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or (
            module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"the worker sent an object of a class the audit does not accept: {module}.{name}"
        )


def safe_loads(data: bytes) -> Any:
    """Unpickle what a worker sent, accepting only the allow-listed classes."""
    return _SafeUnpickler(io.BytesIO(data)).load()
