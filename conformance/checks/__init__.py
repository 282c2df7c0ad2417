"""Imports every check module so its ``@check`` functions register in the default registry.

The list is explicit: a module named here that does not exist yet is skipped and reported in
``MISSING``; an error inside an existing module propagates.
"""

import importlib

CHECK_MODULES: tuple[str, ...] = (
    "attention",
    "masks",
    "mha",
    "layernorm",
    "ffn",
    "positional",
    "layers",
    "models",
    "sampler",
    "loss",
)

MISSING: list[str] = []

for _name in CHECK_MODULES:
    _full = f"{__name__}.{_name}"
    try:
        importlib.import_module(_full)
    except ModuleNotFoundError as _exc:
        if _exc.name != _full:
            raise
        MISSING.append(_name)
