"""The edit protocol: parsing, applying, the loose second match, whole-file fallback, the oracle's diffs."""

from __future__ import annotations

import random

import pytest

from harness.coder.edits import EditError, apply_answer, apply_blocks, parse_blocks, render_block
from harness.models.providers.oracle import diff_blocks

CODE = "import os\n\ndef f(x):\n    return x + 1\n\ndef g(x):\n    return x + 1\n\nprint(f(1))\n"


def test_parse_and_apply_one_block() -> None:
    answer = (
        "Plan: add two.\n\ntrain.py\n<<<<<<< SEARCH\ndef f(x):\n    return x + 1\n"
        "=======\ndef f(x):\n    return x + 2\n>>>>>>> REPLACE\n"
    )
    out = apply_answer(answer, {"train.py": CODE}, "train.py")
    assert "return x + 2" in out.files["train.py"]
    assert out.files["train.py"].count("return x + 1") == 1
    assert out.notes == []


def test_blocks_inside_fences_and_file_names() -> None:
    answer = "```python\ntrain.py\n<<<<<<< SEARCH\nprint(f(1))\n=======\nprint(f(2))\n>>>>>>> REPLACE\n```\n"
    blocks = parse_blocks(answer, "main.py")
    assert blocks[0].file == "train.py"
    assert apply_blocks({"train.py": CODE}, blocks).files["train.py"].endswith("print(f(2))\n")


def test_ambiguous_search_is_refused_with_reason() -> None:
    answer = render_block("train.py", "    return x + 1\n", "    return x\n")
    with pytest.raises(EditError, match="matches 2 places"):
        apply_answer(answer, {"train.py": CODE}, "train.py")


def test_missing_search_is_refused_with_reason() -> None:
    answer = render_block("train.py", "def h(x):\n", "def k(x):\n")
    with pytest.raises(EditError, match="does not match"):
        apply_answer(answer, {"train.py": CODE}, "train.py")


def test_indentation_tolerant_match_says_so() -> None:
    answer = render_block("train.py", "def g(x):\nreturn x + 1\n", "def g(x):\n    return x * 3\n")
    out = apply_answer(answer, {"train.py": CODE}, "train.py")
    assert "return x * 3" in out.files["train.py"]
    assert any("ignoring indentation" in n for n in out.notes)


def test_unclosed_block() -> None:
    with pytest.raises(EditError, match="not closed"):
        apply_answer("train.py\n<<<<<<< SEARCH\nimport os\n=======\n", {"train.py": CODE}, "train.py")


def test_empty_search_only_creates_files() -> None:
    with pytest.raises(EditError, match="empty"):
        apply_answer(render_block("train.py", "", "x = 1\n"), {"train.py": CODE}, "train.py")
    out = apply_answer(render_block("util.py", "", "X = 1\n"), {"train.py": CODE}, "train.py")
    assert out.files["util.py"] == "X = 1\n"


def test_whole_file_fallback_and_garbage() -> None:
    new = CODE.replace("x + 1", "x + 5")
    out = apply_answer(f"Here it is:\n```python\n{new}```\n", {"train.py": CODE}, "train.py")
    assert out.whole_file and out.files["train.py"] == new
    assert out.format == "whole_file"
    with pytest.raises(EditError, match="no edits") as info:
        apply_answer("I think you should use a bigger learning rate.", {"train.py": CODE}, "train.py")
    assert info.value.kind == "prose"
    with pytest.raises(EditError, match="no SEARCH/REPLACE blocks") as info:
        apply_answer("```python\nx = 1\n```", {"train.py": CODE}, "train.py")
    assert info.value.kind == "snippets"


def test_oracle_diff_blocks_reproduce_target_exactly() -> None:
    rng = random.Random(0)
    base = [f"line {i}\n" if i % 7 else "\n" for i in range(150)] + ["x = 1\n"] * 3
    for _ in range(200):
        b = list(base)
        for _ in range(rng.randint(1, 6)):
            k = rng.randrange(len(b))
            op = rng.choice("idr")
            if op == "i":
                b.insert(k, f"new {rng.random()}\n")
            elif op == "d":
                del b[k]
            else:
                b[k] = f"rep {rng.random()}\n"
        old, new = "".join(base), "".join(b)
        blocks = diff_blocks(old, new, "t.py")
        answer = "\n".join(render_block(x.file, x.search, x.replace) for x in blocks)
        assert apply_answer(answer, {"t.py": old}, "t.py").files["t.py"] == new
