"""Meta-tests: the spec parses, every claim is traceable to tests, and every citation is valid.

The real repository must have no problem; planted trees (built in tmp_path) must have each problem
reported, so the auditing functions are shown to have teeth.
"""

import dataclasses
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from transformer_conformance import spec
from transformer_conformance.spec import audit as spec_audit
from transformer_conformance.spec import links as spec_links
from transformer_conformance.spec.render import render

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "spec" / "published-ids.txt"

# ----------------------------------------------------------------------------- planted-tree helpers

NOTE_HEADER = """\
[[note]]
file = "n0.txt"
label = "N0"
title = "A planted note"
headings = ["Intro", "Masks"]
"""


def claim_toml(claim_id: str, status: str = "holds", **extra: str) -> str:
    """One [[claim]] entry; ``extra`` adds or (with value "") removes fields."""
    fields = {
        "id": f'"{claim_id}"',
        "area": f'"{claim_id.split(".")[0]}"',
        "title": '"A title"',
        "status": f'"{status}"',
        "statement": '"A precise statement."',
        "sources": '[{note = "n0.txt", heading = "Intro"}]',
        "components": '["attention"]',
    }
    for key, value in extra.items():
        if value == "":
            fields.pop(key, None)
        else:
            fields[key] = value
    return "[[claim]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items()) + "\n"


def write_spec(tmp_path: Path, *claims: str, header: str = NOTE_HEADER) -> Path:
    path = tmp_path / "claims.toml"
    path.write_text(header + "\n" + "".join(claims), encoding="utf-8")
    return path


def write_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "tree"
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text), encoding="utf-8")
    (root / "tests").mkdir(parents=True, exist_ok=True)
    return root


def one_test(claim_id: str) -> str:
    """A test module with one test citing ``claim_id``."""
    return f"import pytest\n\n@pytest.mark.claim({claim_id!r})\ndef test_x():\n    pass\n"


def write_pending(tmp_path: Path, entries: dict[str, str]) -> Path:
    path = tmp_path / "pending.toml"
    path.write_text("".join(f'[[pending]]\nid = "{k}"\nreason = "{v}"\n\n' for k, v in entries.items()))
    return path


def fail_listing(title: str, problems: list[str]) -> None:
    pytest.fail(title + "\n  " + "\n  ".join(problems), pytrace=False)


def assert_reported(problems: list[str], *fragments: str) -> None:
    assert problems, "expected at least one problem, got none"
    for fragment in fragments:
        assert any(fragment in p for p in problems), f"no problem mentions {fragment!r}: {problems}"


# ----------------------------------------------------------------------------- the real repository


def test_published_ids_are_stable():
    """IDs never change once published: every ID in spec/published-ids.txt is still defined, and
    every defined ID has been published (so a rename shows up as one missing and one unpublished)."""
    claims = spec.load_claims()
    published = [
        line.strip()
        for line in PUBLISHED.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert published, "spec/published-ids.txt is empty or unreadable"
    missing = [cid for cid in published if cid not in claims]
    assert not missing, f"published claim IDs missing from spec/claims.toml (IDs never change): {missing}"
    unpublished = [cid for cid in claims if cid not in set(published)]
    assert not unpublished, f"claim IDs not yet listed in spec/published-ids.txt: {unpublished}"


def test_spec_file_has_no_problem():
    assert spec_audit.spec_problems() == []


def test_claims_are_frozen_and_in_file_order():
    claims = spec.load_claims()
    text = spec.CLAIMS_PATH.read_text(encoding="utf-8")
    in_file = re.findall(r'^id = "([^"]+)"', text, flags=re.MULTILINE)
    assert list(claims) == in_file
    first = next(iter(claims.values()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.status = "refuted"  # type: ignore[misc]


def test_claim_text_is_our_own_english():
    """Statements, titles, conditions and reasons are written in English (no pasted note sentences)."""
    offenders = []
    for claim in spec.load_claims().values():
        for name in ("title", "statement", "condition", "reason", "justification"):
            value = getattr(claim, name)
            if value is not None and not value.isascii():
                offenders.append(f"{claim.id}.{name}")
    assert not offenders, f"non-English (non-ASCII) text in: {offenders}"


def test_every_note_heading_cited_exists_and_informal_claims_are_complete():
    claims = spec.load_claims()
    notes = spec.load_notes()
    assert len(notes) == 5
    for claim in claims.values():
        assert claim.origin == "project" or claim.sources, claim.id
        if claim.status == "conditional":
            assert claim.condition, claim.id
        if claim.status in ("informal", "refuted"):
            assert claim.reason, claim.id


def test_no_test_or_check_cites_an_unknown_claim():
    problems = spec_audit.unknown_id_problems(spec.load_claims(), spec_links.collect(ROOT))
    if problems:
        fail_listing("citations of claim IDs the spec does not define:", problems)


def test_claim_references_are_statically_readable():
    problems = sorted(set(spec_links.collect(ROOT).problems))
    if problems:
        fail_listing("claim references the static scan cannot read:", problems)


def test_pending_list_is_valid_and_not_stale():
    claims = spec.load_claims()
    pending = spec.load_pending()
    links = spec_links.collect(ROOT)
    assert spec_audit.pending_problems(claims, links, pending) == []
    for cid, reason in pending.items():
        warnings.warn(f"claim {cid!r} is pending (no test yet): {reason}", UserWarning, stacklevel=1)


def test_every_testable_claim_has_a_test():
    """Holds / refuted / conditional claims each need at least one @pytest.mark.claim test."""
    claims = spec.load_claims()
    problems = spec_audit.coverage_problems(claims, spec_links.collect(ROOT), spec.load_pending())
    if problems:
        pytest.fail(f"{len(problems)} claim(s) without a test:\n  " + "\n  ".join(problems), pytrace=False)


def test_static_check_scan_matches_runtime_registry():
    try:
        from transformer_conformance.registry import all_checks

        runtime = all_checks()
    except ModuleNotFoundError as e:  # the registry or the checks package is not written yet
        if e.name in ("transformer_conformance.registry", "transformer_conformance.checks"):
            pytest.skip(f"{e.name} does not exist yet")
        raise
    static = spec_links.scan_checks(ROOT)
    problems = sorted(set(static.problems)) + spec_audit.registry_problems(static.checks, runtime)
    if problems:
        pytest.fail(
            "the static scan of conformance/checks differs from the runtime registry (declare every check "
            "with a literal @check(...) decorator):\n  " + "\n  ".join(problems),
            pytrace=False,
        )


def test_spec_md_is_up_to_date():
    committed = (ROOT / "spec" / "SPEC.md").read_text(encoding="utf-8")
    assert committed == render(), "spec/SPEC.md is stale: run `make spec`"


def test_render_is_deterministic_and_complete():
    first, second = render(), render()
    assert first == second
    for claim_id in spec.load_claims():
        assert f"### `{claim_id}`" in first


def test_render_module_prints_the_document():
    out = subprocess.run(
        [sys.executable, "-m", "transformer_conformance.spec.render"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    assert out == render().encode("utf-8")


# ----------------------------------------------------------------------------- planted: spec file


def test_planted_valid_spec_has_no_problem(tmp_path):
    informal = claim_toml("mask.other", "informal", reason='"x"')
    path = write_spec(tmp_path, claim_toml("attention.good"), informal)
    assert spec_audit.spec_problems(path) == []
    assert list(spec.load_claims(path)) == ["attention.good", "mask.other"]


def test_planted_duplicate_id(tmp_path):
    path = write_spec(tmp_path, claim_toml("attention.twice"), claim_toml("attention.twice"))
    assert_reported(spec_audit.spec_problems(path), "duplicate ID 'attention.twice'")
    with pytest.raises(spec.SpecError, match="duplicate"):
        spec.load_claims(path)


def test_planted_conditional_without_condition(tmp_path):
    path = write_spec(tmp_path, claim_toml("attention.cond", "conditional"))
    assert_reported(spec_audit.spec_problems(path), "conditional claim needs a 'condition'")


def test_planted_informal_and_refuted_without_reason(tmp_path):
    vague, wrong = claim_toml("attention.vague", "informal"), claim_toml("attention.wrong", "refuted")
    path = write_spec(tmp_path, vague, wrong)
    assert_reported(
        spec_audit.spec_problems(path), "informal claim needs a 'reason'", "refuted claim needs a 'reason'"
    )


@pytest.mark.parametrize(
    ("claim", "fragment"),
    [
        (claim_toml("attention.x", "maybe"), "bad status 'maybe'"),
        (claim_toml("Attention.Bad_ID"), "bad ID syntax"),
        (claim_toml("nodots"), "bad ID syntax"),
        (claim_toml("attention.x", components='["attention", "warp-drive"]'), "unknown component 'warp-"),
        (claim_toml("attention.x", conventions='["left_handed"]'), "unknown convention 'left_handed'"),
        (claim_toml("attention.x", statement=""), "missing required field(s) statement"),
        (claim_toml("attention.x", area='"mask"'), "area 'mask' is not the first segment"),
        (claim_toml("attention.x", sources='[{note = "n9.txt", heading = "Intro"}]'), "unknown note 'n9"),
        (claim_toml("attention.x", sources='[{note = "n0.txt", heading = "Nowhere"}]'), "heading 'Nowhere'"),
        (claim_toml("attention.x", sources="[]"), "no sources"),
        (claim_toml("attention.x", components="[]"), "'components' may be empty only for informal"),
        (claim_toml("attention.x", condition='"only sometimes"'), "'condition' is only allowed on"),
        (claim_toml("attention.x", colour='"blue"'), "unknown field(s) colour"),
    ],
)
def test_planted_bad_claim_fields(tmp_path, claim, fragment):
    path = write_spec(tmp_path, claim)
    assert_reported(spec_audit.spec_problems(path), fragment)


def test_planted_project_claim_may_have_no_sources(tmp_path):
    path = write_spec(tmp_path, claim_toml("attention.policy", sources="[]", origin='"project"'))
    assert spec_audit.spec_problems(path) == []


def test_planted_project_claim_cites_what_it_derives_from(tmp_path):
    """A project claim may list the passages it is derived from: validated like any source, rendered as
    "Derived from" (never "Sources", which would say the notes state it); a justification is rendered."""
    derived = claim_toml(
        "attention.derived", origin='"project"', justification='"Why the entry has this origin."'
    )
    policy = claim_toml("attention.policy", sources="[]", origin='"project"')
    stated = claim_toml("attention.stated")
    path = write_spec(tmp_path, derived, policy, stated)
    assert spec_audit.spec_problems(path) == []
    text = render(write_tree(tmp_path, {}), path)
    sections = {s.split("`")[0]: s for s in text.split("### `")[1:]}
    assert "- **Derived from:**" in sections["attention.derived"]
    assert "- **Sources:**" not in sections["attention.derived"]
    assert "- **Justification:** Why the entry has this origin." in sections["attention.derived"]
    assert "- **Sources:** none (project claim)" in sections["attention.policy"]
    assert "- **Sources:**\n" in sections["attention.stated"]
    bad = claim_toml(
        "attention.derived",
        origin='"project"',
        sources='[{note = "n0.txt", heading = "Nowhere"}]',
        justification='""',
    )
    problems = spec_audit.spec_problems(write_spec(tmp_path, bad))
    assert_reported(problems, "heading 'Nowhere'", "field 'justification' must be a non-empty string")


def test_planted_parse_error_and_missing_notes(tmp_path):
    broken = write_spec(tmp_path, claim_toml("attention.x") + "[[claim]\nid = ")
    assert_reported(spec_audit.spec_problems(broken), "TOML parse error")
    no_notes = write_spec(tmp_path, claim_toml("attention.x"), header="")
    assert_reported(spec_audit.spec_problems(no_notes), "no [[note]] entries")


def test_problems_are_all_reported_not_just_the_first(tmp_path):
    path = write_spec(tmp_path, claim_toml("attention.a", "conditional"), claim_toml("attention.b", "maybe"))
    problems = spec_audit.spec_problems(path)
    assert_reported(problems, "attention.a", "attention.b")


# ----------------------------------------------------------------------------- planted: links


PLANTED_TESTS = {
    "tests/test_forms.py": """
        import pytest
        from pytest import mark
        claim = pytest.mark.claim

        IDS = ("attention.from-constant",)
        CASES = [pytest.param(1, marks=pytest.mark.claim("attention.from-list")), 2]

        @pytest.mark.claim("attention.decorated", "attention.second")
        def test_decorated():
            assert True

        @mark.claim(*IDS)
        def test_constant():
            assert True

        @claim("attention.alias")
        def test_alias():
            assert True

        @pytest.mark.parametrize("x", [pytest.param(0, marks=[pytest.mark.claim("attention.param")])])
        def test_param(x):
            assert x == 0

        @pytest.mark.parametrize("x", CASES)
        def test_cases(x):
            assert x

        class TestGroup:
            @pytest.mark.claim("attention.on-method")
            def test_method(self):
                assert True

        def helper():
            return "pytest.mark.claim('not.a-reference')"
    """,
}


def test_planted_scan_finds_every_marker_form(tmp_path):
    root = write_tree(tmp_path, PLANTED_TESTS)
    links = spec_links.collect(root)
    assert links.problems == []
    by_claim = links.tests_by_claim()
    f = "tests/test_forms.py::"
    expected = {
        "attention.decorated": [f + "test_decorated"],
        "attention.second": [f + "test_decorated"],
        "attention.from-constant": [f + "test_constant"],
        "attention.alias": [f + "test_alias"],
        "attention.param": [f + "test_param"],
        "attention.from-list": [f + "test_cases"],
        "attention.on-method": [f + "TestGroup::test_method"],
    }
    assert by_claim == expected
    assert "not.a-reference" not in by_claim  # text in a string is not a marker


PLANTED_WHOLESALE = {
    "tests/test_wholesale.py": """
        import pytest

        pytestmark = [pytest.mark.skipif(False, reason="x"), pytest.mark.claim("attention.module-wide")]
        UNUSED = pytest.mark.claim("attention.unattached")

        @pytest.mark.claim("attention.on-class")
        class TestGroup:
            pytestmark = pytest.mark.claim("attention.class-wide")

            def test_method(self):
                assert True

        @pytest.mark.claim("attention.on-helper")
        def helper():
            return 1

        @pytest.mark.claim("attention.checked")
        def test_checks_it():
            assert helper() == 1

        def test_checks_nothing_in_particular():
            assert True
    """,
}


def test_planted_module_wide_credit_is_reported_and_not_given(tmp_path):
    """Module- or class-level claim markers (and markers on no test) would credit tests that do not check
    the claim: each is a scan problem, and only the test that carries its own marker is credited."""
    links = spec_links.collect(write_tree(tmp_path, PLANTED_WHOLESALE))
    assert links.tests_by_claim() == {"attention.checked": ["tests/test_wholesale.py::test_checks_it"]}
    assert_reported(
        links.problems,
        "tests/test_wholesale.py:4: claim 'attention.module-wide' in a module-level pytestmark",
        "claim 'attention.unattached' in module-level name 'UNUSED'",
        "claim 'attention.on-class' in class 'TestGroup'",
        "claim 'attention.class-wide' in the pytestmark of class 'TestGroup'",
        "claim 'attention.on-helper' in the decorator of 'helper', which is not a test",
    )
    assert len(links.problems) == 5
    # ... and the audit reports them (test_claim_references_are_statically_readable fails on them)
    assert_reported(spec_audit.audit(write_tree(tmp_path, PLANTED_WHOLESALE)).scan, "module-level pytestmark")


def test_planted_unknown_id_in_test_and_check(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "tests/test_x.py": """
                import pytest

                @pytest.mark.claim("attention.known", "attention.no-such-claim")
                def test_x():
                    assert True
            """,
            "conformance/checks/attention.py": """
                from transformer_conformance.registry import check

                @check("attention.check-one", claims=("attention.known", "mask.invented"), kind="structural")
                def check_one(ctx):
                    return None
            """,
        },
    )
    claims = spec.load_claims(write_spec(tmp_path, claim_toml("attention.known")))
    links = spec_links.collect(root)
    assert [c.check_id for c in links.checks] == ["attention.check-one"]
    assert links.checks_by_claim()["attention.known"] == ["conformance/checks/attention.py::check_one"]
    problems = spec_audit.unknown_id_problems(claims, links)
    assert_reported(problems, "'attention.no-such-claim'", "'mask.invented'")
    assert not any("'attention.known'" in p for p in problems)


def test_planted_claim_without_test(tmp_path):
    root = write_tree(
        tmp_path,
        {"tests/test_x.py": one_test("attention.tested")},
    )
    claims = spec.load_claims(
        write_spec(
            tmp_path,
            claim_toml("attention.tested"),
            claim_toml("attention.untested"),
            claim_toml("attention.refuted-untested", "refuted", reason='"x"'),
            claim_toml("attention.informal", "informal", reason='"x"'),
        )
    )
    links = spec_links.collect(root)
    assert spec_audit.untested_claims(claims, links) == ["attention.untested", "attention.refuted-untested"]
    assert_reported(spec_audit.coverage_problems(claims, links), "attention.untested [holds")
    # A pending claim is excused from coverage, and reported by the meta-test instead.
    assert spec_audit.untested_claims(claims, links, {"attention.untested": "not built"}) == [
        "attention.refuted-untested"
    ]


def test_planted_stale_pending(tmp_path):
    root = write_tree(
        tmp_path,
        {"tests/test_x.py": one_test("attention.tested")},
    )
    claims = spec.load_claims(
        write_spec(
            tmp_path,
            claim_toml("attention.tested"),
            claim_toml("attention.waiting"),
            claim_toml("attention.vague", "informal", reason='"x"'),
        )
    )
    pending = spec.load_pending(
        write_pending(
            tmp_path,
            {
                "attention.tested": "already tested",
                "attention.ghost": "unknown",
                "attention.vague": "informal",
                "attention.waiting": "legitimately pending",
            },
        )
    )
    problems = spec_audit.pending_problems(claims, spec_links.collect(root), pending)
    assert_reported(problems, "'attention.tested': already tested", "'attention.ghost': not a claim")
    assert_reported(problems, "'attention.vague': an informal claim needs no test")
    assert not any("attention.waiting" in p for p in problems)


def test_planted_malformed_pending(tmp_path):
    path = tmp_path / "pending.toml"
    path.write_text('[[pending]]\nid = "attention.x"\n')
    assert_reported(spec_audit.pending_file_problems(path), "expected exactly the fields id and reason")


def test_planted_unreadable_references(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "tests/test_dynamic.py": """
                import pytest
                ID = make_id()

                @pytest.mark.claim(ID)
                def test_a():
                    pass

                @pytest.mark.claim()
                def test_b():
                    pass
            """,
            "tests/test_broken.py": "def test_(:\n",
            "conformance/checks/x.py": """
                @check("x.check", claims=compute())
                def check_x(ctx):
                    pass

                def register(prefix):
                    check(f"{prefix}.dynamic", claims=("x.y",))(lambda ctx: None)
            """,
        },
    )
    problems = spec_links.collect(root).problems
    assert_reported(problems, "not a string literal or constant: ID", "claim marker without claim IDs")
    assert_reported(problems, "tests/test_broken.py: cannot parse", "claims=... is missing or not a tuple")
    assert_reported(problems, "conformance/checks/x.py:7: check registered by a call")


def test_planted_registry_mismatch():
    @dataclasses.dataclass(frozen=True)
    class FakeSpec:
        id: str
        claims: tuple[str, ...]

    static = [
        spec_links.CheckRef("a.same", ("x.one",), "c.py", "check_same", 1),
        spec_links.CheckRef("a.claims-differ", ("x.one",), "c.py", "check_differ", 5),
        spec_links.CheckRef("a.static-only", ("x.one",), "c.py", "check_static", 9),
    ]
    runtime = [
        FakeSpec("a.same", ("x.one",)),
        FakeSpec("a.claims-differ", ("x.two",)),
        FakeSpec("a.dynamic", ()),
    ]
    problems = spec_audit.registry_problems(static, runtime)
    assert_reported(problems, "'a.claims-differ': static claims", "'a.static-only'", "'a.dynamic'")
    assert not any("'a.same'" in p for p in problems)
    assert spec_audit.registry_problems(static[:1], runtime[:1]) == []


def test_planted_audit_reports_each_kind(tmp_path):
    root = write_tree(
        tmp_path,
        {"tests/test_x.py": one_test("attention.ghost")},
    )
    claims_path = write_spec(tmp_path, claim_toml("attention.lonely"))
    report = spec_audit.audit(root, claims_path, write_pending(tmp_path, {"attention.phantom": "x"}))
    assert_reported(report.unknown_ids, "'attention.ghost'")
    assert_reported(report.coverage, "attention.lonely")
    assert_reported(report.stale_pending, "'attention.phantom': not a claim")
    assert_reported(report.all_problems(), "[unknown_ids]", "[stale_pending]")
    broken = spec_audit.audit(root, write_spec(tmp_path, claim_toml("attention.a", "conditional")))
    assert_reported(broken.spec, "conditional claim needs a 'condition'")
