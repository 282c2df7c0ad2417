"""Conformance suite: audits Transformer implementations claim by claim against the reference.

Entry points: ``python -m conformance run --impl TARGET`` (see ``conformance.cli``),
``conformance.api.run_audit`` and the pytest plugin (``--conformance-impl``). Write an adapter by
subclassing ``conformance.adapter.Adapter``; see conformance/README.md.
"""

from conformance.adapter import Adapter, Capability, Conventions

__all__ = ["Adapter", "Capability", "Conventions"]
