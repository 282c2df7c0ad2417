"""Planted-bug targets: each module holds one small adapter with exactly one deliberate bug.

Every mutant is registered in ``conformance.targets.BUILTIN_TARGETS`` as ``mutant.<name>`` and its
docstring names the claim (and check) that must reject it; the tests in ``tests/conformance``
assert that rejection, which is how the checks prove they have teeth.
"""
