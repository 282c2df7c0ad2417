"""Reference Transformer: readable, shape-checked, property-tested.

Every public function names, in its docstring, the spec claim IDs (``spec/claims.toml``) it realises.
Run-time shape checks (jaxtyping + beartype) are on by default; set ``JAXTYPING_DISABLE=1`` before
import to switch them off (benchmarks do).
"""
