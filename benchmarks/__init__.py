"""Benchmarks for ``make bench``: ratios measured side by side in one run, printed as one table.

Run ``python -m benchmarks [NAME ...] [--quick] [--device auto|cpu|cuda] [--json PATH]`` (names, like
``--only``, select benchmarks: ``python -m benchmarks calibration --seeds 200``). Each module measures one
figure family and documents its method in its docstring; ``docs/PERFORMANCE.md`` explains the figures and
the targets. Nothing here asserts an absolute time: every timed figure is a ratio of medians of
contenders interleaved round by round, or a growth exponent.

Claims: attention.pattern-quadratic, kvcache.equals-recompute, training.parallel-speed (figures only);
attention.formula (the tolerance calibration).
"""

# Run order and the module that implements each benchmark (each exposes NAME and run(settings)).
BENCHMARKS: dict[str, str] = {
    "attention": "benchmarks.attention",
    "kv-cache": "benchmarks.kv_cache",
    "shape-checks": "benchmarks.shape_checks",
    "audit-cost": "benchmarks.audit_cost",
    "audit-xdist": "benchmarks.audit_xdist",
    "vs-nn-transformer": "benchmarks.vs_nn_transformer",
    "variants": "benchmarks.variants",
    "calibration": "benchmarks.calibration",
}
