"""The A/B report a reviewer reads (issue 13, 7): the verdict first, then each evaluator's paired difference
with its interval and minimum detectable drop, then the cases that changed, worst first, each with its
question, both answers and both scores. Built from synthetic side results: no run is needed to lay it out."""

from __future__ import annotations

import json

from evals import ABDataset, ABResult, SideCase, SideInfo, ab_to_json, combine, compare, render_ab_markdown
from evals._compare import detectable_drop_text

CASES = 12
DROPPED = {"port-03": 0.0, "port-07": 0.5}  # key_facts on the current side; 1.0 on the base side
IMPROVED = "port-09"  # 0.0 → 1.0


def _case(name: str, score: float, answer: str, *, not_run: int = 0) -> SideCase:
    return SideCase(
        name=name,
        question=f"Which port does {name} use?",
        answers=[answer] if not not_run else [],
        answered=[True] if not not_run else [],
        scores={"key_facts": [score]} if not not_run else {},
        not_run=not_run,
    )


def _result() -> ABResult:
    names = [f"port-{i:02d}" for i in range(CASES)]
    base = {n: _case(n, 0.0 if n == IMPROVED else 1.0, f"base says {n} uses 70{n[-2:]}") for n in names}
    current = {n: _case(n, DROPPED.get(n, 1.0), f"current says {n} uses 90{n[-2:]}") for n in names}
    ports = ABDataset(name="ports", base=base, current=current)
    single = ABDataset(
        name="single",
        base={"only": _case("only", 1.0, "base answer")},
        current={"only": _case("only", 0.0, "current answer"), "late": _case("late", 0.0, "", not_run=1)},
    )
    datasets = [ports, single]
    family = compare(
        combine({d.name: d.scores("current") for d in datasets}),
        combine({d.name: d.scores("base") for d in datasets}),
    )
    prompts = {"research": "research@aaa", "critic": "critic@bbb"}
    return ABResult(
        base=SideInfo(label="base", model="openai:m", revision="HEAD @ 0123456789ab", prompt_versions=prompts),
        current=SideInfo(label="current", model="openai:m", revision="work", prompt_versions=prompts),
        datasets=datasets,
        family=family,
        repeat=1,
        duration_seconds=3.0,
    )


def test_the_markdown_leads_with_the_verdict_then_differences_then_changed_cases_worst_first() -> None:
    result = _result()
    markdown = render_ab_markdown(result)
    lines = markdown.splitlines()

    # 1. The verdict, and why, before anything else.
    assert lines[0] == "# A/B eval: FAILED"
    assert lines[2] == "## Why it failed"
    assert any("not run in full (current:single/late ×1)" in line for line in lines[3:6])
    # 2. Per evaluator: the paired difference, its interval and the minimum detectable drop.
    header = "| evaluator | cases | base | current | Δ | 90% interval | p | level | MDD | verdict |"
    table = lines.index(header)
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines[table + 2 : table + 4]}
    ports, single = result.family["ports/key_facts"], result.family["single/key_facts"]
    assert ports.min_detectable_drop is not None
    assert rows["ports/key_facts"].startswith(
        f"| ports/key_facts | {CASES} | 0.917 | 0.875 | {ports.mean_diff:+.3f} |"
        f" [{ports.lower_bound:+.3f}, {ports.upper_bound:+.3f}] |"
    )
    assert f"| {detectable_drop_text(ports.min_detectable_drop, cases=CASES)} |" in rows["ports/key_facts"]
    # One case in common: no spread, so no claim about what the run could have caught.
    assert single.min_detectable_drop is None
    assert "| unknown (1 case) |" in rows["single/key_facts"]
    assert "unknown with fewer than 2 cases in common" in markdown
    # 3. What each side was, after the numbers.
    sides = lines.index("## The sides")
    assert table < sides
    assert "`research@aaa` `critic@bbb`" in lines[sides + 4]  # every prompt's version, research first
    # 4. The changed cases, worst first: question, scores on both sides, both answers.
    heading = f"## ports: 3 of {CASES} cases changed (worst first)"
    changed = lines.index(heading)
    assert sides < changed
    cases = [line for line in lines[changed:] if line.startswith("### ")]
    assert cases[:3] == ["### port-03 (-1.00)", "### port-07 (-0.50)", "### port-09 (+1.00)"]
    block = markdown[markdown.index("### port-03") : markdown.index("### port-07")]
    assert "**Question:** Which port does port-03 use?" in block
    assert "**Scores:** key_facts 1.00 → 0.00" in block
    assert block.index("**Base answer:**") < block.index("> base says port-03 uses 7003")
    assert block.index("**Current answer:**") < block.index("> current says port-03 uses 9003")
    assert block.index("> base says") < block.index("> current says")


def test_the_json_has_every_number_the_markdown_rounds_and_every_case_not_run() -> None:
    result = _result()
    data = json.loads(json.dumps(ab_to_json(result)))
    evaluators = {e["name"]: e for e in data["evaluators"]}
    assert evaluators["ports/key_facts"]["min_detectable_drop"] == result.family["ports/key_facts"].min_detectable_drop
    assert evaluators["ports/key_facts"]["min_detectable_drop_unknown"] is None
    assert evaluators["single/key_facts"]["min_detectable_drop"] is None
    assert evaluators["single/key_facts"]["min_detectable_drop_unknown"] == (
        "unknown: 1 case in common, a spread needs at least 2"
    )
    assert data["not_run"] == ["current:single/late ×1"]
    assert data["sides"]["base"]["prompt_versions"] == {"research": "research@aaa", "critic": "critic@bbb"}
    assert data["passed"] is False
