"""Tolerance calibration: false-alarm rate on correct targets and kill rate on the planted-bug mutants.

Claims: attention.formula (the differential rule it is judged by, ``reference/tolerance.py``), and the
teeth of every check (each mutant's ``REJECTED_BY``).

A gate that fails correct code gets switched off, so the differential rule must stay silent on correct
implementations at every score scale the checks use, while every planted bug is still caught. Two
figures per profile (quick, ci, thorough):

- **false-alarm rate**: correct targets (the reference in each dtype, every torch SDPA backend present
  on the device, ``nn.MultiheadAttention``, the README's example adapter ``my_attention``) run the
  body of ``attention.differential`` (``differential_at_scales``) with scores scaled by each of
  ``SCALES`` (the check itself uses 1 and 1e3), or ``mha.differential`` for an MHA target, once per
  seed; any failure is a false alarm. The ci profile is derandomized: its one seed is the ci seed.
  ``my_lm`` declares ``loads_weights=False``, so no differential check applies to it.
- **kill rate**: every mutant of ``transformer_conformance.mutants`` is audited on the checks its
  ``REJECTED_BY`` names (as ``tests/conformance/test_teeth.py`` does), once per seed; a (mutant, seed)
  counts as killed when every named check fails.

Seeds: ``--seeds N`` for the correct targets (default 30 full, 10 quick, 1 tiny; the figures in
docs/PERFORMANCE.md are from ``python -m benchmarks calibration --seeds 200``) and ``max(1, N // 10)``
for the mutants (``--mutant-seeds N``); ``--part false-alarms`` or ``--part kills`` runs one half
(two processes side by side use both cores). Runs with one torch thread (small tensors); the correct
targets run with the run-time shape checks off (they change no value, and halve the cost), the
mutants with them as the audit has them. No time is asserted or reported as a figure; ``--tiny``
(two correct targets, three mutants, one seed) checks only that everything runs.
"""

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import jaxtyping
import torch

from benchmarks._timing import Row, Settings

NAME = "calibration"
#: Score scales of the sweep: from unit scores up to the checks' adversarial 1e3.
SCALES: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
PROFILES: tuple[str, ...] = ("quick", "ci", "thorough")
ALL_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
EXAMPLE_ATTENTION = "transformer_conformance.examples.my_attention:make"


@dataclass(frozen=True)
class Correct:
    """One correct target in one dtype."""

    target: str
    dtype: torch.dtype

    def label(self) -> str:
        """Short name for the table."""
        name = "my_attention (example)" if self.target == EXAMPLE_ATTENTION else self.target
        return f"{name} {str(self.dtype).removeprefix('torch.')}"


def correct_targets(device: torch.device) -> list[Correct]:
    """The reference in every dtype; each SDPA backend present, nn.MultiheadAttention and the example
    adapter in float32 (or the first dtype they declare)."""
    from transformer_conformance.adapter import Capability
    from transformer_conformance.targets import resolve_target

    found = [Correct("reference", dt) for dt in ALL_DTYPES]
    names = ["torch-sdpa-math", "torch-sdpa-flash", "torch-sdpa-efficient", "torch-sdpa-cudnn", "torch-mha"]
    for name in [*names, EXAMPLE_ATTENTION]:
        adapter = resolve_target(name)
        if not adapter.capabilities & {Capability.ATTENTION, Capability.MHA}:
            continue  # a backend this machine does not offer
        devices = getattr(adapter, "devices", None)  # SDPA backends say where they exist
        if devices is not None and device.type not in devices:
            continue
        declared = adapter.conventions.dtypes
        found.append(Correct(name, torch.float32 if torch.float32 in declared else declared[0]))
    return found


def judge_once(entry: Correct, profile: str, seed: int, device: torch.device) -> str | None:
    """Run the differential rule once on a correct target; the failure message, or None."""
    from transformer_conformance.adapter import Capability
    from transformer_conformance.checks.attention import DIFFERENTIAL, differential_at_scales
    from transformer_conformance.context import PROFILES as CHECK_PROFILES
    from transformer_conformance.context import CheckContext, CheckFailure, NotApplicable
    from transformer_conformance.registry import load_builtin_checks
    from transformer_conformance.targets import resolve_target

    adapter = resolve_target(entry.target)
    runs: list[tuple[str, Callable[[CheckContext], None]]] = []
    if Capability.ATTENTION in adapter.capabilities:
        runs.append((DIFFERENTIAL, lambda ctx: differential_at_scales(ctx, SCALES)))
    if Capability.MHA in adapter.capabilities:
        runs.append(("mha.differential", load_builtin_checks().get("mha.differential").fn))
    for check_id, body in runs:
        ctx = CheckContext(
            adapter,
            device=device,
            dtype=entry.dtype,
            profile=CHECK_PROFILES[profile],
            seed=seed,
            check_id=check_id,
            shrink=False,  # only whether it fails counts here, not the minimal case
        )
        try:
            with torch.no_grad():
                body(ctx)
        except NotApplicable:
            continue
        except CheckFailure as failure:
            return f"{check_id}: {failure.message}"
        except Exception as exc:  # a correct target that raises is a false alarm too
            return f"{check_id}: {type(exc).__name__}: {exc}"
    return None


def seeds_for(profile: str, count: int, first: int) -> list[int]:
    """The ci profile's one derandomized seed, else ``count`` seeds from ``first``."""
    from transformer_conformance.context import CI_SEED

    return [CI_SEED] if profile == "ci" else list(range(first, first + count))


def mutant_modules() -> dict[str, ModuleType]:
    """``mutant.<name>`` -> module, for every planted-bug module."""
    import transformer_conformance.mutants as package

    return {
        f"mutant.{info.name.replace('_', '-')}": importlib.import_module(f"{package.__name__}.{info.name}")
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name)
        if not info.name.startswith("_")
    }


def killed(name: str, module: ModuleType, profile: str, seed: int, device: torch.device) -> bool:
    """True when every check of the mutant's ``REJECTED_BY`` fails on it."""
    from transformer_conformance.api import run_audit

    checks = list(module.REJECTED_BY)
    report = run_audit([name], device=device, profile=profile, seed=seed, check=checks, progress=False)
    status = {r.check: r.status for r in report.results}
    return all(status.get(c) == "fail" for c in checks)


def run(settings: Settings) -> list[Row]:
    """False-alarm rate per correct target and profile; kill rate of the mutants per profile."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(settings)
    finally:
        torch.set_num_threads(threads)


def _run(settings: Settings) -> list[Row]:
    count = settings.seeds if settings.seeds is not None else settings.pick(30, 10, 1)
    mutant_count = settings.mutant_seeds if settings.mutant_seeds is not None else max(1, count // 10)
    first = settings.seed
    rows: list[Row] = []
    scales = ", ".join(f"{s:g}" for s in SCALES)
    entries = correct_targets(settings.device)
    if settings.mode == "tiny":
        entries = [e for e in entries if e.target in ("reference", EXAMPLE_ATTENTION)][:2]
    checks_were_off = jaxtyping.config.jaxtyping_disable
    if settings.part == "kills":
        entries = []
    for entry in entries:
        for profile in PROFILES:
            seeds = seeds_for(profile, count, first)
            jaxtyping.config.update("jaxtyping_disable", True)
            try:
                alarms = [(s, m) for s in seeds if (m := judge_once(entry, profile, s, settings.device))]
            finally:
                jaxtyping.config.update("jaxtyping_disable", checks_were_off)
            rate = len(alarms) / len(seeds)
            mha = entry.target == "torch-mha"
            what = "mha.differential, its own inputs" if mha else f"score scales {scales}"
            note = f"{len(alarms)} of {len(seeds)} seeds; {what}"
            if alarms:
                note += f"; first: seed {alarms[0][0]}: {alarms[0][1][:160]}"
            rows.append(Row(NAME, f"{entry.label()} profile={profile}", "false-alarm rate", rate * 100, "%",
                            "0%", rate == 0, note, {"seeds": len(seeds), "alarms": len(alarms)}))
    modules = mutant_modules() if settings.part != "false-alarms" else {}
    if settings.mode == "tiny":
        modules = dict(list(modules.items())[:3])
    for profile in PROFILES if modules else ():
        seeds = seeds_for(profile, mutant_count, first)
        outcomes = {(name, s): killed(name, module, profile, s, settings.device)
                    for name, module in modules.items() for s in seeds}
        survivors = sorted({name for (name, _), ok in outcomes.items() if not ok})
        rate = sum(outcomes.values()) / len(outcomes)
        has_target = profile == "ci"
        note = f"{len(modules)} mutants x {len(seeds)} seed(s)"
        note += f"; survived: {', '.join(survivors)[:200]}" if survivors else "; none survived"
        rows.append(Row(NAME, f"mutants profile={profile}", "kill rate", rate * 100, "%",
                        "100%" if has_target else "", rate == 1 if has_target else None, note,
                        {"mutants": len(modules), "seeds": len(seeds), "survivors": survivors}))
    return rows
