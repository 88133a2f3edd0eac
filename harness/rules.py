"""The fairness rules every candidate must pass, checked on the code before it runs.

The harness, not the script, chooses the data and the validation budget; the log format is
the contract with the parser. The same checks apply to the human records (a test)."""

from __future__ import annotations

import re

REQUIRED_ENV = ("NANOGPT_TRAIN_FILES", "NANOGPT_VAL_FILES", "NANOGPT_VAL_TOKENS")

_LOG_FORMAT = re.compile(r"val_loss:")


def check_code(code: str) -> list[str]:
    """Rule violations found in a candidate script (empty when it may run)."""
    problems = []
    for var in REQUIRED_ENV:
        if var not in code:
            problems.append(f"the script must read {var} from the environment (it no longer mentions it)")
    if not _LOG_FORMAT.search(code):
        problems.append("the script must print `step:S/N val_loss:X train_time:Tms step_avg:Ams` lines")
    return problems
