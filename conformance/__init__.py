"""transformer-conformance: audits Transformer implementations claim by claim against the reference.

One import namespace holds the whole project: ``transformer_conformance`` is the suite (the
``conformance/`` folder), ``transformer_conformance.reference`` the oracle (``reference/``) and
``transformer_conformance.spec`` the claims (``spec/``). Entry points: ``transformer-conformance run
--impl TARGET`` or ``python -m transformer_conformance run`` (see ``transformer_conformance.cli``),
``transformer_conformance.api.run_audit`` and the pytest plugin (``--conformance-impl``). Write an adapter
by subclassing ``transformer_conformance.Adapter``; see conformance/README.md.

Importing this package imports nothing heavy: ``transformer_conformance.spec`` stays stdlib-only and the
pytest plugin stays cheap in projects that never ask for an audit. ``Adapter``, ``Capability`` and
``Conventions`` (which need torch) load on first use.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformer_conformance.adapter import Adapter, Capability, Conventions

__all__ = ["Adapter", "Capability", "Conventions"]


def __getattr__(name: str) -> Any:
    """Load the adapter API lazily (PEP 562): ``import transformer_conformance.spec`` needs no torch."""
    if name in __all__:
        from transformer_conformance import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
