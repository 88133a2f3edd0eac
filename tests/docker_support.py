"""Fixtures and helpers for the tests that need a real Docker engine (imported by their modules).

Where the engine or the image is missing, those tests skip with a reason that says
how to get them (`-ra` prints it at the end of the run); they never pass vacuously.
"""

from __future__ import annotations

import secrets
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.execution.base import ExecResult, LineCallback, RunSpec
from harness.execution.docker import DockerExecutor
from harness.execution.docker_container import RUN_LABEL

SETUP_HINT = "run `bash .ci/docker-engine.sh` (as root) to install and start one"


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A client of a running engine, or a loud skip."""
    from harness.errors import SpeedrunError
    from harness.execution.images import docker_client as connect

    try:
        return connect(timeout=30)
    except SpeedrunError as exc:
        pytest.skip(f"DOCKER TESTS SKIPPED: no Docker engine ({str(exc).split(';')[0]}); {SETUP_HINT}")


@pytest.fixture(scope="session")
def mini_image(docker_client: Any) -> str:
    """The mini track's image, or a loud skip (the tests never build it: that takes minutes)."""
    from harness.execution.images import image_exists, image_name

    image = image_name("mini")
    if not image_exists(docker_client, image):
        pytest.skip(f"DOCKER TESTS SKIPPED: image {image} is not built; {SETUP_HINT}")
    return image


class Sandbox:
    """Runs small Python scripts through a DockerExecutor and checks nothing is left behind."""

    def __init__(self, client: Any, image: str, root: Path) -> None:
        self.client = client
        self.image = image
        self.root = root
        self.data_dir = root / "data"
        self.data_dir.mkdir()

    def executor(self, **options: Any) -> DockerExecutor:
        # Small limits so that the hostile scripts meet them in seconds.
        defaults: dict[str, Any] = {"memory": "512m", "pids_limit": 256, "tmpfs_size": "64m", "shm_size": "64m"}
        return DockerExecutor(self.image, **{**defaults, **options})

    def spec(self, script: str, *, time_limit_s: float = 60, env: dict[str, str] | None = None) -> RunSpec:
        label = f"test-{secrets.token_hex(4)}"
        workspace = self.root / label / "workspace"
        workspace.mkdir(parents=True)
        (workspace / "script.py").write_text(textwrap.dedent(script))
        return RunSpec(
            command=["python", "script.py"],
            workspace=workspace,
            # Outside the workspace, as the harness keeps it: the run cannot touch it.
            log_path=self.root / label / "run.log",
            env=env or {},
            time_limit_s=time_limit_s,
            data_dir=self.data_dir,
            label=label,
        )

    def run(
        self,
        script: str,
        *,
        executor: DockerExecutor | None = None,
        on_line: LineCallback | None = None,
        **spec_options: Any,
    ) -> tuple[ExecResult, str, RunSpec]:
        spec = self.spec(script, **spec_options)
        result = (executor or self.executor()).run(spec, on_line)
        self.assert_removed(spec.label)
        return result, spec.log_path.read_text(errors="replace"), spec

    def containers(self, label: str) -> list[Any]:
        return list(self.client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={label}"}))

    def assert_removed(self, label: str) -> None:
        left = self.containers(label)
        assert not left, f"containers left behind for {label}: {[c.name for c in left]}"


@pytest.fixture
def sandbox(docker_client: Any, mini_image: str, tmp_path: Path) -> Sandbox:
    return Sandbox(docker_client, mini_image, tmp_path)
