"""Answers as real models give them, against the mini baseline script: each applied, or refused
with a reason that says what to send instead; and each counted by its format."""

from __future__ import annotations

import pytest

from harness.coder.edits import EditError, apply_answer
from harness.coder.formats import code_blocks
from tests.conftest import REPO

SCRIPT = (REPO / "records" / "mini" / "00-baseline" / "train.py").read_text()
FILES = {"train.py": SCRIPT}
NEW = SCRIPT.replace("learning_rate: float = 1e-3", "learning_rate: float = 2e-3")


def fence(code: str, info: str = "python") -> str:
    return f"```{info}\n{code}```\n"


def _line_after(prefix: str) -> str:
    """The line of record 00's script after the one starting with `prefix` (no hard-coded numbers)."""
    lines = SCRIPT.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith(prefix)) + 1]


APPLIED = {
    "search/replace": (
        "Raise the learning rate.\n\ntrain.py\n<<<<<<< SEARCH\n    learning_rate: float = 1e-3\n=======\n"
        "    learning_rate: float = 2e-3\n>>>>>>> REPLACE\n",
        "search_replace",
    ),
    "each block in its own fence": (
        "Plan.\n\n```python\ntrain.py\n<<<<<<< SEARCH\n    learning_rate: float = 1e-3\n=======\n"
        "    learning_rate: float = 2e-3\n>>>>>>> REPLACE\n```\n\n```python\ntrain.py\n<<<<<<< SEARCH\n"
        "    min_lr: float = 1e-4\n=======\n    min_lr: float = 1e-4\n>>>>>>> REPLACE\n```\n",
        "search_replace",
    ),
    "drifted indentation": (
        "train.py\n<<<<<<< SEARCH\n  learning_rate: float = 1e-3\n  min_lr: float = 1e-4\n=======\n"
        "  learning_rate: float = 2e-3\n  min_lr: float = 1e-4\n>>>>>>> REPLACE\n",
        "search_replace_loose",
    ),
    "dropped blank lines": (
        "train.py\n<<<<<<< SEARCH\nimport glob\nimport math\nimport os\nimport time\n"
        "from dataclasses import dataclass\nimport numpy as np\n=======\n"
        "import glob\nimport math\nimport os\nimport time\n"
        "from dataclasses import dataclass\n\nimport numpy as np\n>>>>>>> REPLACE\n\ntrain.py\n<<<<<<< SEARCH\n"
        "    learning_rate: float = 1e-3\n=======\n    learning_rate: float = 2e-3\n>>>>>>> REPLACE\n",
        "search_replace_loose",
    ),
    "whole file, no name": ("Here is the improved script:\n\n" + fence(NEW), "whole_file"),
    "whole file, name before the fence": ("**train.py**\n" + fence(NEW), "whole_file"),
    "whole file, name in the fence": (fence(NEW, "python train.py"), "whole_file"),
    "whole file, misnamed": ("`train_gpt.py`:\n" + fence(NEW), "whole_file"),
    "whole file among snippets": (
        "First the idea:\n"
        + fence("lr = 2e-3\n")
        + "\nThe whole script:\n"
        + fence(NEW)
        + "\nRun: "
        + fence("python train.py\n", "bash"),
        "whole_file",
    ),
    "unified diff in a fence": (
        "The change:\n```diff\n--- a/train.py\n+++ b/train.py\n@@ -46,4 +46,4 @@ class Hyperparameters:\n"
        "     batch_size: int = 12  # sequences per step\n"
        f" {_line_after('    batch_size: int = 12')}\n"
        "-    learning_rate: float = 1e-3\n+    learning_rate: float = 2e-3\n     min_lr: float = 1e-4\n```\n",
        "unified_diff",
    ),
    "bare diff with a wrong line count": (
        "--- train.py\n+++ train.py\n@@ -1,1 +1,1 @@\n"
        "-    learning_rate: float = 1e-3\n+    learning_rate: float = 2e-3\n",
        "unified_diff",
    ),
}


@pytest.mark.parametrize("name", list(APPLIED))
def test_answers_that_apply(name: str) -> None:
    answer, fmt = APPLIED[name]
    out = apply_answer(answer, FILES, "train.py")
    assert out.format == fmt
    assert "learning_rate: float = 2e-3" in out.files["train.py"]
    assert out.files["train.py"].count("\n") >= SCRIPT.count("\n") - 1  # nothing else lost


REFUSED = {
    "prose only": ("I would raise the learning rate to 2e-3 and shorten the warmup.", "prose", "no edits"),
    "snippets only": (
        "Change these:\n" + fence("learning_rate = 2e-3\n") + fence("warmup_iters = 50\n"),
        "snippets",
        "2 code block(s) but no SEARCH/REPLACE blocks, and none is the whole of train.py",
    ),
    "missing divider": (
        "train.py\n<<<<<<< SEARCH\n    learning_rate: float = 1e-3\n    learning_rate: float = 2e-3\n>>>>>>> REPLACE\n"
        "\ntrain.py\n<<<<<<< SEARCH\n    min_lr: float = 1e-4\n=======\n    min_lr: float = 2e-4\n>>>>>>> REPLACE\n",
        "missing_divider",
        "block 1 (train.py) has no '=======' line",
    ),
    "cut off at the cap": (
        "train.py\n<<<<<<< SEARCH\n    learning_rate: float = 1e-3\n=======\n    learning_rate",
        "unclosed_block",
        "not closed",
    ),
    "search copied wrong": (
        "train.py\n<<<<<<< SEARCH\n    learning_rate: float = 0.001\n=======\n"
        "    learning_rate: float = 2e-3\n>>>>>>> REPLACE\n",
        "search_not_found",
        "the closest line in train.py is: 'learning_rate: float = 1e-3'",
    ),
    "search that matches nothing": (
        "train.py\n<<<<<<< SEARCH\nimport\n=======\nimport\n>>>>>>> REPLACE\n",
        "search_not_found",
        "does not match",
    ),
    "diff that does not apply": (
        "```diff\n--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-learning_rate = 0.001\n+learning_rate = 0.002\n```\n",
        "diff_mismatch",
        "your diff does not apply: hunk 1",
    ),
    "the format's placeholder copied as SEARCH": (
        "train.py\n<<<<<<< SEARCH\nexact lines copied from the current file\n=======\n"
        "    learning_rate: float = 2e-3\n>>>>>>> REPLACE\n",
        "placeholder",
        "its SEARCH part is the format's placeholder words, not code",
    ),
    "the format's placeholder copied as REPLACE": (
        "train.py\n<<<<<<< SEARCH\n    learning_rate: float = 1e-3\n=======\n"
        "    # (your changed lines go here)\n>>>>>>> REPLACE\n",
        "placeholder",
        "its REPLACE part is the format's placeholder words",
    ),
    "the prompt's prose pasted into a whole file": (
        fence("# Task mini-0: tune the schedule\n\nThe script trains a model; the target is 1.77.\n\n" + NEW),
        "whole_file_not_python",
        "your whole-file answer for train.py is not Python (line 3: invalid syntax: 'The script trains",
    ),
    "a whole file nested past the parser's limits": (
        fence(NEW + "x = 1" + "[0]" * 100_000 + "\n"),
        "whole_file_not_python",
        "your whole-file answer for train.py is not Python (it is nested too deeply",
    ),
    "two whole files": (
        fence(NEW) + "\nor, more boldly:\n" + fence(NEW.replace("2e-3", "3e-3")),
        "several_whole_files",
        "2 code blocks that each look like the whole of train.py",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_answers_that_are_refused_say_what_to_send(name: str) -> None:
    answer, kind, words = REFUSED[name]
    with pytest.raises(EditError) as info:
        apply_answer(answer, FILES, "train.py")
    assert info.value.kind == kind
    assert words in str(info.value) and "\n" not in str(info.value)


def test_the_system_prompt_shows_the_format_on_a_real_line_of_the_file() -> None:
    from harness.coder.prompts import SYSTEM, example_block, example_line

    line = example_line(SCRIPT)
    assert line is not None and SCRIPT.count(line) == 1 and "environ" not in line
    system = SYSTEM.format(file="train.py", example=example_block("train.py", SCRIPT))
    assert "exact lines copied" not in system and f"<<<<<<< SEARCH\n{line}\n=======" in system
    # A model that copies the example as it stands changes nothing that matters, and it applies.
    example = system[system.index("train.py\n<<<<<<<") : system.index(">>>>>>> REPLACE") + 16]
    out = apply_answer(example, FILES, "train.py")
    assert out.files["train.py"].replace("    # (your changed lines go here)\n", "", 1) == SCRIPT


def test_code_block_names() -> None:
    blocks = code_blocks("```python train.py\nx\n```\n\nutil.py:\n```\ny\n```\n```python\n# model.py\nz\n```\n")
    assert [(b.name, b.code) for b in blocks] == [("train.py", "x\n"), ("util.py", "y\n"), ("model.py", "z\n")]
