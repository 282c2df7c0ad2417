"""Command line: ``transformer-conformance run --impl TARGET[,TARGET...]`` and
``transformer-conformance list`` (also ``python -m transformer_conformance``).

Exit codes: 0 every gated check passed (known deviations allowed), 1 a failure, a stale
deviation entry or a gated target on which no check applied, 2 a usage error (unknown target,
check or dtype; CUDA requested but absent; a timeout that is not a finite positive number; a
report path that cannot be written), found before any check runs.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from transformer_conformance.adapter import Capability
from transformer_conformance.api import ReportPaths, UsageError, cli_path, load_registry, run_audit
from transformer_conformance.context import PROFILES
from transformer_conformance.registry import Registry, load_builtin_checks
from transformer_conformance.report import AuditReport, claim_statements
from transformer_conformance.targets import BUILTIN_TARGETS, resolve_target

#: Environment variable naming the targets when ``--impl`` is not given (the pytest plugin reads it
#: too, for ``--conformance-impl``).
IMPL_ENV = "CONFORMANCE_IMPL"
CHECKS_FROM_HELP = (
    "package.module:attribute naming a conformance.registry.Registry; its checks REPLACE the "
    "built-in ones (only its checks run). To add to the built-in checks, build that Registry "
    "from load_builtin_checks().all() plus yours (see conformance/README.md)"
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``run`` and ``list``)."""
    parser = argparse.ArgumentParser(
        prog="python -m transformer_conformance",
        description="Audit Transformer implementations claim by claim.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the checks against one or more targets")
    env_impl = os.environ.get(IMPL_ENV) or None
    run.add_argument(
        "--impl",
        required=env_impl is None,
        default=env_impl,
        help="comma-separated targets: built-in names (see `list`) or package.module:factory, "
        f"imported with the current directory on sys.path (default: ${IMPL_ENV})",
    )
    run.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="DIR",
        help="put DIR first on sys.path before importing package.module targets (repeatable; "
        "repro commands carry it for adapters imported from outside the installed packages)",
    )
    run.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    run.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    run.add_argument(
        "--profile",
        default="ci",
        choices=sorted(PROFILES),
        help="quick (few examples), ci (derandomized, default), thorough (many examples), kernel (attention "
        "kernels: lengths and head widths on and around block boundaries)",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=None,
        help="run seed (default: $TRANSFORMER_CONFORMANCE_SEED if set, else fixed under ci, else random)",
    )
    run.add_argument("--claims", default=None, help="only checks of claims matching this fnmatch pattern(s)")
    run.add_argument("--check", default=None, help="only these check IDs (comma-separated)")
    run.add_argument("--json", type=Path, default=None, help="write the JSON report here")
    run.add_argument("--junit", type=Path, default=None, help="write JUnit XML here")
    run.add_argument("--markdown", type=Path, default=None, help="write the Markdown report here")
    run.add_argument(
        "--html",
        type=Path,
        default=None,
        help="write the self-contained HTML report here (pictures need the html extra: matplotlib)",
    )
    run.add_argument(
        "--jsonl",
        type=Path,
        default=None,
        help="stream results here as they complete (default: next to --json, *.partial.jsonl)",
    )
    run.add_argument(
        "--gate", default=None, help="comma-separated targets whose failures set exit code 1 (default: all)"
    )
    run.add_argument(
        "--save-inputs", type=Path, default=None, help="save failing checks' inputs here (torch.save)"
    )
    run.add_argument("--timeout", type=float, default=None, help="per-check time limit in seconds")
    run.add_argument(
        "--deviations",
        type=Path,
        default=None,
        help="directory of <target>.toml known-deviation files, added to the built-in ones (an entry "
        "for the same claim and check replaces the built-in entry)",
    )
    run.add_argument("--checks-from", default=None, metavar="MODULE:REGISTRY", help=CHECKS_FROM_HELP)
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr (default on): a bar with counts and ETA on a terminal, one line per "
        "finished target otherwise (CI logs); --no-progress: none",
    )
    run.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads on the CPU (default 1: the checks use small tensors, where more threads "
        "mostly add contention; 0 keeps torch's own default)",
    )
    run.add_argument(
        "--in-process",
        action="store_true",
        help="run the targets in this process (for debugging with pdb). UNSAFE for gating: a target can "
        "then exit, crash or hang the audit, patch the oracle or modify its inputs. Default: each target "
        "runs in its own worker process",
    )
    run.add_argument(
        "--memory-limit",
        type=float,
        default=None,
        metavar="MIB",
        help="address space each target's worker may add beyond its start-up size; past it the check "
        "fails with kind memory-limit",
    )
    run.add_argument(
        "--allow-empty",
        action="store_true",
        help="a gated target on which no check applies (no capability, or every check not-applicable) "
        "does not fail the run (it is still reported)",
    )
    run.add_argument(
        "--no-shrink",
        action="store_true",
        help="report a failing example as found, without shrinking it to a minimal one (faster)",
    )
    run.add_argument(
        "--example",
        default=None,
        metavar="JSON",
        help="replay exactly one example of a check (a failure's counterexample replay, printed in its "
        "repro command); use with --check",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="print only the final line")
    listing = sub.add_parser("list", help="show targets, claims and checks")
    listing.add_argument("--checks-from", default=None, metavar="MODULE:REGISTRY", help=CHECKS_FROM_HELP)
    listing.add_argument("--mutants", action="store_true", help="also list the planted-bug mutant targets")
    listing.add_argument(
        "--capability",
        default=None,
        metavar="NAME",
        help="only checks needing this capability, their claims, and the targets declaring it "
        f"({', '.join(c.value for c in Capability)})",
    )
    return parser


def _registry(checks_from: str | None, registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    return load_registry(checks_from) if checks_from else load_builtin_checks()


def _listed_targets(args: argparse.Namespace) -> tuple[dict[str, str], int]:
    """Built-in targets to list (mutants only with ``--mutants``; with ``--capability``, those that
    declare it) and how many were hidden."""
    names = {n: f for n, f in BUILTIN_TARGETS.items() if args.mutants or not n.startswith("mutant.")}
    if args.capability:
        wanted = Capability(args.capability)
        keep = {}
        for name, factory in names.items():
            try:
                adapter = resolve_target(name)
            except Exception:  # a target this machine cannot build (e.g. transformers missing)
                continue
            if wanted in adapter.capabilities:
                keep[name] = factory
        names = keep
    return names, len(BUILTIN_TARGETS) - len(names)


def cmd_list(args: argparse.Namespace, registry: Registry | None) -> int:
    """Print built-in targets (mutants with ``--mutants``), every claim with the checks realising
    it, then every check; ``--capability`` keeps what needs (or, for targets, declares) it."""
    if args.capability and args.capability not in {c.value for c in Capability}:
        raise UsageError(
            f"--capability: expected one of {', '.join(c.value for c in Capability)}, got {args.capability!r}"
        )
    reg = _registry(args.checks_from, registry)
    checks = reg.all()
    if args.capability:
        checks = [spec for spec in checks if Capability(args.capability) in spec.needs]
    statements = claim_statements()
    targets, hidden = _listed_targets(args)
    print("Targets:")
    width = max((len(name) for name in targets), default=0)
    for name, factory in targets.items():
        print(f"  {name:<{width}}  {factory}")
    if hidden:
        why = "--mutants lists the planted-bug mutants" if not args.capability else "filtered"
        print(f"  ({hidden} more hidden: {why})")
    print("\nClaims:")
    by_claim: dict[str, list[str]] = {}
    for spec in checks:
        for claim in spec.claims:
            by_claim.setdefault(claim, []).append(spec.id)
    shown = set(by_claim) if args.capability else set(statements) | set(by_claim)
    for claim in sorted(shown):
        covered = ", ".join(by_claim.get(claim, [])) or "(no check)"
        unknown = "" if not statements or claim in statements else " [UNKNOWN CLAIM ID]"
        print(f"  {claim}{unknown}: {statements.get(claim, '')}\n      checks: {covered}")
    print("\nChecks:")
    for spec in checks:
        needs = ",".join(sorted(c.value for c in spec.needs)) or "-"
        deps = f" depends_on={','.join(spec.depends_on)}" if spec.depends_on else ""
        print(f"  {spec.id} [{spec.kind}] needs={needs}{deps}\n      claims: {', '.join(spec.claims)}")
    return 0


def next_steps(report: AuditReport, paths: ReportPaths) -> str:
    """The closing lines: where the reports are and what to do next."""
    written = [(label, p) for label, p in (("JSON", paths.json), ("JUnit", paths.junit),
                                           ("Markdown", paths.markdown), ("HTML", paths.html))
               if p is not None]  # fmt: skip
    stream = paths.stream_path()
    if written:
        lines = ["Reports: " + ", ".join(f"{label} {cli_path(p)}" for label, p in written)]
    else:
        lines = ["Reports: none written (add --json, --junit, --markdown or --html FILE)"]
    if stream is not None:
        lines[0] += f" (results streamed to {cli_path(stream)})"
    if report.failures:
        lines.append(
            f"Next: rerun a failure with the `repro:` command printed under it (same seed, same inputs; "
            f"add --save-inputs DIR to keep them); {len(report.failures)} failing check(s) above."
        )
    elif report.stale:
        lines.append("Next: remove or correct the stale deviation entries above.")
    elif report.gated_empty():
        lines.append("Next: no check applied to the EMPTY target(s) above; declare their capabilities.")
    else:
        lines.append("Next: nothing fails; known deviations and not-applicable checks are listed per target.")
    if paths.markdown is not None:
        where = cli_path(paths.markdown)
        lines.append(f"Read {where} for the matrix, every failure and every known deviation.")
    if paths.html is not None:
        lines.append(f"Open {cli_path(paths.html)} in a browser: the same, each failure's evidence drawn.")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace, registry: Registry | None) -> int:
    """Run the audit, print failures, the matrix and totals; return the exit code."""
    if args.threads < 0:
        raise UsageError(f"--threads: expected 0 or a positive number, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = ReportPaths(
        json=args.json, junit=args.junit, markdown=args.markdown, jsonl=args.jsonl, html=args.html
    )
    report = run_audit(
        args.impl,
        device=args.device,
        dtype=args.dtype,
        profile=args.profile,
        seed=args.seed,
        claims=args.claims,
        check=args.check,
        timeout=args.timeout,
        report_paths=paths,
        gate=args.gate,
        save_inputs=args.save_inputs,
        registry=registry,
        checks_from=args.checks_from,
        deviations_dir=args.deviations,
        progress=args.progress,
        import_paths=args.path,
        in_process=args.in_process,
        memory_limit_mib=args.memory_limit,
        allow_empty=args.allow_empty,
        shrink=not args.no_shrink,
        example=args.example,
    )
    text = report.summary_text()
    print(text.splitlines()[-1] if args.quiet else text)
    if not args.quiet:
        print(next_steps(report, paths))
    return report.exit_code


def main(argv: Sequence[str] | None = None, *, registry: Registry | None = None) -> int:
    """Entry point; ``registry`` replaces the built-in checks (tests use an isolated one)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args, registry)
        return cmd_run(args, registry)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
