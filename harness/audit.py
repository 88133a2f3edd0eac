"""The static rule auditor: what a candidate's code does that the harness cannot measure.

The harness times runs and (where the track allows) evaluates the trained model itself, but
some ways of gaming a score leave no trace in a measurement: a patched clock, a network
download, work handed to another process, training data read from a hard-coded path. The
auditor reads the code's syntax tree (never runs it) and reports each finding with its rule:

- a `violation` makes the node invalid before it runs (it breaks a rule outright);
- a `flag` is recorded on the node and in the leaderboard for a person to review.

Given record i's code as `baseline`, a finding that record i has as well is not held against
the candidate: the human records are the reference for what the rules allow.
"""

from __future__ import annotations

import ast
import re
from typing import Literal

from pydantic import BaseModel

REQUIRED_ENV = ("NANOGPT_TRAIN_FILES", "NANOGPT_VAL_FILES", "NANOGPT_VAL_TOKENS")
#: Settings the harness hands a run; a script that overwrites them changes the task.
HARNESS_ENV_PREFIXES = ("NANOGPT_", "SPEEDRUN_")
#: Functions whose replacement would make a run's own clock lie.
CLOCK_NAMES = frozenset(
    {"time", "perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time_ns", "process_time", "synchronize"}
)
NETWORK_MODULES = frozenset(
    {"socket", "urllib", "requests", "http", "httpx", "aiohttp", "ftplib", "smtplib", "paramiko", "websocket"}
)
PROCESS_MODULES = frozenset({"multiprocessing", "threading", "concurrent"})
#: Compiler settings the human records use; others change what is measured and are reviewed.
ALLOWED_COMPILE_FLAGS = frozenset({"coordinate_descent_tuning"})
COMPILE_CONFIGS = ("torch._inductor.config", "torch._dynamo.config")
#: Host paths a training script has no business reading: the harness's and the user's state.
FORBIDDEN_PATH_PARTS = ("/proc/", "/.ssh", "/.cache/speedrun", "/results/", "/run/docker", "docker.sock", ".env")
LOG_MARKER = "val_loss:"
#: An absolute or home path of two parts or more, or a shard file named outright.
HARD_CODED_PATH = re.compile(r"^(~?/[\w.*-]+(/[\w.*-]+)+/?|[\w./*-]*\.bin)$")

Severity = Literal["violation", "flag"]


class Finding(BaseModel):
    rule: str
    severity: Severity
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"[{self.rule}] {self.message}{where}"

    @property
    def key(self) -> tuple[str, str]:
        """What two findings share when they are the same finding in two versions of a script."""
        return (self.rule, self.message)


def parse(code: str) -> ast.Module | SyntaxError:
    """The script's syntax tree, or why it has none. Hostile code nested thousands deep makes
    the parser raise RecursionError or MemoryError instead of SyntaxError; both count as not
    parsing, never as a crash of the harness. Parsed only, never compiled or run."""
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        return exc
    except (ValueError, RecursionError, MemoryError) as exc:
        return SyntaxError(f"it is nested too deeply or is too large to parse ({type(exc).__name__})")


def audit(code: str, baseline: str | None = None) -> list[Finding]:
    """The findings of `code`, less those `baseline` (record i's code) has as well."""
    tree = parse(code)
    if isinstance(tree, SyntaxError):
        return [
            Finding(
                rule="syntax", severity="violation", message=f"the script does not parse: {tree.msg}", line=tree.lineno
            )
        ]
    found = _Auditor(tree).run()
    base = parse(baseline) if baseline is not None else None
    if base is None or isinstance(base, SyntaxError):
        return found
    allowed = {f.key for f in _Auditor(base).run()}
    return [f for f in found if f.key not in allowed]


def violations(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "violation"]


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for a chain of attributes on a name, else ''."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _strings(node: ast.AST) -> list[str]:
    """Literal text in an expression: constants and the fixed parts of f-strings."""
    out = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            out.append(sub.value)
    return out


class _Auditor:
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.findings: list[Finding] = []
        #: local name -> the module it stands for (`import torch._inductor.config as config`)
        self.aliases: dict[str, str] = {}

    def add(self, rule: str, severity: Severity, message: str, node: ast.AST | None = None) -> None:
        finding = Finding(rule=rule, severity=severity, message=message, line=getattr(node, "lineno", None))
        if finding.key not in {f.key for f in self.findings}:
            self.findings.append(finding)

    def resolve(self, node: ast.AST) -> str:
        name = _dotted(node)
        head, _, rest = name.partition(".")
        if head in self.aliases:
            return self.aliases[head] + ("." + rest if rest else "")
        return name

    def run(self) -> list[Finding]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.aliases[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
                    self._module(alias.name, node)
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                    self._module(f"{node.module}.{alias.name}", node)
        env_reads: dict[str, int] = dict.fromkeys(REQUIRED_ENV, 0)
        has_log_line = False
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    self._assignment(target, node)
            elif isinstance(node, ast.Call):
                self._call(node)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text in env_reads:
                    env_reads[text] += 1
                if LOG_MARKER in text:
                    has_log_line = True
                self._path(text, node)
        for var, count in env_reads.items():
            if count == 0:
                self.add("data-env", "violation", f"the script must read {var} from the environment")
        if env_reads["NANOGPT_VAL_FILES"] > 1:
            self.add(
                "val-data",
                "flag",
                "NANOGPT_VAL_FILES is read in more than one place: validation data may be used outside evaluation",
            )
        if not has_log_line:
            self.add(
                "log-format",
                "violation",
                "the script must print `step:S/N val_loss:X train_time:Tms step_avg:Ams` lines",
            )
        return self.findings

    def _module(self, name: str, node: ast.AST) -> None:
        root = name.split(".")[0]
        if root in NETWORK_MODULES or name.startswith("urllib"):
            self.add("network", "violation", f"imports {name}: a run may not use the network", node)
        elif root in PROCESS_MODULES:
            self.add("processes", "flag", f"imports {name}: work in other threads or processes escapes the clock", node)

    def _assignment(self, target: ast.AST, node: ast.AST) -> None:
        if isinstance(target, ast.Attribute):
            owner = self.resolve(target.value)
            if target.attr in CLOCK_NAMES and owner.split(".")[0] in ("time", "torch"):
                self.add(
                    "clock", "violation", f"replaces {owner}.{target.attr}: the run's clock must not be patched", node
                )
            if owner in COMPILE_CONFIGS and target.attr not in ALLOWED_COMPILE_FLAGS:
                self.add(
                    "compile-flags", "flag", f"sets {owner}.{target.attr}, a compiler setting no record uses", node
                )
        elif (
            isinstance(target, ast.Name)
            and target.id in CLOCK_NAMES
            and self.aliases.get(target.id, "").startswith(("time.", "torch."))
        ):
            self.add(
                "clock", "violation", f"rebinds {self.aliases[target.id]}: the run's clock must not be patched", node
            )
        elif isinstance(target, ast.Subscript) and self.resolve(target.value) == "os.environ":
            for text in _strings(target.slice):
                if text.startswith(HARNESS_ENV_PREFIXES):
                    self.add("data-env", "violation", f"overwrites {text}, which the harness sets", node)

    def _call(self, node: ast.Call) -> None:
        func = self.resolve(node.func)
        if func in ("setattr", "builtins.setattr") and len(node.args) >= 2:
            owner = self.resolve(node.args[0])
            name = node.args[1].value if isinstance(node.args[1], ast.Constant) else None
            if isinstance(name, str) and name in CLOCK_NAMES and owner.split(".")[0] in ("time", "torch"):
                self.add("clock", "violation", f"replaces {owner}.{name}: the run's clock must not be patched", node)
        elif func in ("os.fork", "os.forkpty", "os.system", "os.popen", "os.spawnv", "os.posix_spawn"):
            self.add("processes", "flag", f"calls {func}: work in other processes escapes the clock", node)
        elif func.startswith("subprocess."):
            first = node.args[0] if node.args else None
            command = first.elts[0] if isinstance(first, ast.List | ast.Tuple) and first.elts else first
            # The records log `nvidia-smi`; anything else another process does is unmeasured.
            if not (isinstance(command, ast.Constant) and command.value == "nvidia-smi"):
                self.add("processes", "flag", f"calls {func}: work in other processes escapes the clock", node)
        elif func in ("os.environ.__setitem__", "os.putenv", "os.environ.update", "os.environ.setdefault"):
            for text in _strings(node):
                if text.startswith(HARNESS_ENV_PREFIXES):
                    self.add("data-env", "violation", f"overwrites {text}, which the harness sets", node)

    def _path(self, text: str, node: ast.AST) -> None:
        if any(part in text for part in FORBIDDEN_PATH_PARTS):
            message = f"names {text[:80]!r}: the harness's and the user's files are off limits"
            self.add("harness-state", "violation", message, node)
        elif HARD_CODED_PATH.match(text):
            message = f"hard-codes the path {text[:80]!r}: data comes only from the harness's globs"
            self.add("paths", "flag", message, node)
