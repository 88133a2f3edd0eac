"""The coder: prompts, the edit protocol, and the ask-apply-retry loop."""

from harness.coder.coder import CoderResult, unified_diff, write_candidate
from harness.coder.edits import EditError, apply_answer
from harness.coder.prompts import Feedback, build_messages, parse_hint_levels

__all__ = [
    "CoderResult",
    "EditError",
    "Feedback",
    "apply_answer",
    "build_messages",
    "parse_hint_levels",
    "unified_diff",
    "write_candidate",
]
