"""Planted-bug targets: each module holds one small adapter with exactly one deliberate bug.

Every module here is registered automatically as the built-in target ``mutant.<module-name>``
(``transformer_conformance.targets``), must define ``make()`` and ``REJECTED_BY`` (the check IDs that
must fail on it), and its docstring names the claim the bug violates. ``tests/conformance/test_teeth.py``
asserts that each mutant fails the checks it names and that every registered check is failed by at
least one mutant: that is how the suite proves each check has teeth.
"""
