"""Built-in targets: a name -> "module:factory" table, and the resolver for ``--impl``.

Add a built-in target with one line in ``BUILTIN_TARGETS``. Planted-bug mutants need no line: every
module of ``transformer_conformance.mutants`` with a ``make()`` factory is registered as
``mutant.<module name>`` (underscores become dashes). Anything else given to ``--impl`` must be
``package.module:factory``, where ``factory()`` returns an ``Adapter``. A name
``hf-causal-lm:<model_type>`` builds the generic transformers adapter for that model type
(``targets/hf_causal_lm.py``).

``package.module`` is imported with the current working directory on ``sys.path`` (put first when
it is not there), so every entry point (the ``transformer-conformance`` console script, ``python -m
transformer_conformance``, the pytest plugin) finds an adapter module of the directory it runs in.
"""

import importlib
import importlib.machinery
import os
import pkgutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import transformer_conformance.mutants
from transformer_conformance.adapter import Adapter

BUILTIN_TARGETS: dict[str, str] = {
    "reference": "transformer_conformance.targets.reference:make",
    "torch-sdpa-math": "transformer_conformance.targets.torch_sdpa:make_math",
    "torch-sdpa-flash": "transformer_conformance.targets.torch_sdpa:make_flash",
    "torch-sdpa-efficient": "transformer_conformance.targets.torch_sdpa:make_efficient",
    "torch-sdpa-cudnn": "transformer_conformance.targets.torch_sdpa:make_cudnn",
    "torch-mha": "transformer_conformance.targets.torch_mha:make",
    "torch-gqa": "transformer_conformance.targets.torch_gqa:make",
    "torch-sdpa-alibi": "transformer_conformance.targets.torch_sdpa_alibi:make",
    "torch-layernorm": "transformer_conformance.targets.torch_layernorm:make",
    "torch-encoder-layer": "transformer_conformance.targets.torch_layers:make_encoder_layer",
    "torch-encoder-layer-fastpath": (
        "transformer_conformance.targets.torch_layers:make_encoder_layer_fastpath"
    ),
    "torch-decoder-layer": "transformer_conformance.targets.torch_layers:make_decoder_layer",
    "torch-transformer": "transformer_conformance.targets.torch_layers:make_transformer",
    "torch-transformer-fastpath": "transformer_conformance.targets.torch_layers:make_transformer_fastpath",
    "hf-gpt2": "transformer_conformance.targets.hf_gpt2:make",
    "hf-llama": "transformer_conformance.targets.hf_llama:make",
    "hf-bert": "transformer_conformance.targets.hf_encoders:make_bert",
    "hf-bart": "transformer_conformance.targets.hf_encoders:make_bart",
    "hf-t5": "transformer_conformance.targets.hf_encoders:make_t5",
    "hf-t5-relbias": "transformer_conformance.targets.hf_t5_relbias:make",
    "hf-t5-relbias-causal": "transformer_conformance.targets.hf_t5_relbias:make_causal",
    "hf-gemma2-attention": "transformer_conformance.targets.hf_gemma2_attention:make",
}


#: Target family: ``hf-causal-lm:<model_type>`` (any decoder-only transformers architecture).
HF_CAUSAL_LM_PREFIX = "hf-causal-lm:"


def _mutant_targets() -> dict[str, str]:
    """``mutant.<name>`` for every module of ``transformer_conformance.mutants`` (found, not imported)."""
    found = pkgutil.iter_modules(transformer_conformance.mutants.__path__)
    return {
        f"mutant.{info.name.replace('_', '-')}": f"transformer_conformance.mutants.{info.name}:make"
        for info in sorted(found, key=lambda m: m.name)
        if not info.name.startswith("_")
    }


BUILTIN_TARGETS.update(_mutant_targets())


class TargetError(ValueError):
    """``--impl`` names no known target, or its factory does not give an ``Adapter``."""


def add_import_paths(paths: Iterable[str | Path] = ()) -> None:
    """Put ``paths`` (``--path``) and the current working directory first on ``sys.path``, each once."""
    present = {os.path.abspath(p or os.curdir) for p in sys.path}
    for entry in [*(os.path.abspath(p) for p in paths), os.getcwd()]:
        if entry not in present:
            sys.path.insert(0, entry)
            present.add(entry)


def import_root(spec: str) -> Path | None:
    """The directory that must be on ``sys.path`` to import the (already imported) module of
    ``package.module:attr``; None when the module is installed (site-packages, the standard library)
    or unknown. Repro commands carry it as ``--path DIR``."""
    module_name = spec.partition(":")[0]
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not file and module_name:
        # not imported here (an isolated target is imported in its worker): where its top-level
        # package would be found on sys.path, without running any of its code
        top = module_name.partition(".")[0]
        try:
            found = importlib.machinery.PathFinder.find_spec(top)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.origin or found.origin in ("built-in", "frozen"):
            return None
        file = found.origin
        module_name = top
    if not file:
        return None
    root = Path(file).resolve().parent
    depth = module_name.count(".") + (Path(file).name == "__init__.py")
    for _ in range(depth):
        root = root.parent
    if {"site-packages", "dist-packages"} & set(root.parts) or root == Path(os.__file__).resolve().parent:
        return None
    return root


def import_object(spec: str) -> object:
    """Import ``"package.module:attribute"`` (the cwd on ``sys.path``) and return the attribute."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"target {spec!r}: expected a built-in name or 'package.module:factory'")
    add_import_paths()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"target {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    if not hasattr(module, attr):
        raise TargetError(f"target {spec!r}: module {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


def load_factory(spec: str) -> Callable[[], Adapter]:
    """Import ``"package.module:factory"`` and return the factory."""
    factory = import_object(spec)
    if not callable(factory):
        raise TargetError(f"target {spec!r}: {spec.partition(':')[2]!r} is not callable")
    return factory


def resolve_target(name: str) -> Adapter:
    """Build the adapter for a built-in name or a ``package.module:factory`` string."""
    if name.startswith(HF_CAUSAL_LM_PREFIX):
        from transformer_conformance.targets import hf_causal_lm

        return hf_causal_lm.make(name.removeprefix(HF_CAUSAL_LM_PREFIX))
    if name in BUILTIN_TARGETS:
        factory = load_factory(BUILTIN_TARGETS[name])
    elif ":" in name:
        factory = load_factory(name)
    else:
        known = ", ".join(sorted(BUILTIN_TARGETS))
        raise TargetError(f"unknown target {name!r}: expected one of [{known}] or 'package.module:factory'")
    adapter = factory()
    if not isinstance(adapter, Adapter):
        raise TargetError(f"target {name!r}: factory returned {type(adapter).__name__}, expected an Adapter")
    if name in BUILTIN_TARGETS or adapter.name == Adapter.name:
        adapter.name = name
    return adapter
