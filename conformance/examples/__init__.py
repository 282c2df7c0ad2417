"""Example adapters from conformance/README.md (tested in tests/conformance/test_examples.py)."""
