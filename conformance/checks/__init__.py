"""Imports every check module so its ``@check`` functions register in the default registry.

The list is explicit and final: a new check module must be added here (``inputs`` is a helper
module, not a check module). An import error in any of them is an error, never skipped.
"""

import importlib

CHECK_MODULES: tuple[str, ...] = (
    "attention",
    "masks",
    "mha",
    "mha_grouped",
    "layernorm",
    "ffn",
    "positional",
    "layers",
    "models",
    "encoder_model",
    "sampler",
    "loss",
    "variants",
    "attention_bias",
)

for _name in CHECK_MODULES:
    importlib.import_module(f"{__name__}.{_name}")
