"""The auditor reads hostile scripts without crashing: code nested past the parser's limits is a
syntax violation, like any script that does not parse."""

from __future__ import annotations

import pytest

from harness.audit import audit, parse

DEEP = {
    "subscripts nested past the recursion limit": "x" + "[0]" * 100_000 + "\n",
    "unary minus nested past the parser's memory": "y = " + "-" * 100_000 + "1\n",
    "a null byte": "a = 1\x00\n",
}


@pytest.mark.parametrize("name", list(DEEP))
def test_unparsable_scripts_are_syntax_violations(name: str) -> None:
    findings = audit(DEEP[name])
    assert [(f.rule, f.severity) for f in findings] == [("syntax", "violation")]
    assert findings[0].message.startswith("the script does not parse: ")


def test_an_unparsable_baseline_leaves_the_candidates_findings() -> None:
    candidate = "import socket\n"
    assert audit(candidate, baseline=DEEP["subscripts nested past the recursion limit"]) == audit(candidate)


def test_parse_returns_the_tree_of_good_code() -> None:
    assert not isinstance(parse("a = 1\n"), SyntaxError)
