"""Hostile candidate scripts against the local (bubblewrap) and docker executors.

One test per finding of the security review (and variants), each run in both sandboxes, each
checking what the attack got from inside and that nothing outside the workspace changed:
the results root (journal, run.json, confirm.json), the calibration cache, the home directory
with its ssh key, the project directory with its .env. Real subprocesses, real bwrap, a real
Docker engine (those cases skip, loudly, without one; `bash .ci/docker-engine.sh` starts it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.execution import bwrap
from harness.execution.base import Executor
from harness.execution.docker import DockerExecutor
from harness.execution.local import LocalExecutor
from tests import attack_support as attacks
from tests.attack_support import SECRETS, World, alive_with_token, result_of
from tests.docker_support import docker_client, mini_image

__all__ = ["docker_client", "mini_image"]  # fixtures, imported for pytest to find

LOG_CAP = 8 << 20


def _local() -> Executor:
    if reason := bwrap.unavailable():
        pytest.skip(f"BWRAP TESTS SKIPPED: {reason}; apt-get install bubblewrap")
    return LocalExecutor(
        sandbox="bwrap",
        memory="1g",
        pids_limit=64,
        workspace_size="32m",
        workspace_files=2000,
        tmpfs_size="32m",
        max_log_bytes=LOG_CAP,
    )


@pytest.fixture(params=["local", "docker"])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    if request.param == "local":
        yield _local()
        return
    image = request.getfixturevalue("mini_image")
    ex = DockerExecutor(
        image,
        memory="256m",
        pids_limit=64,
        tmpfs_size="32m",
        shm_size="32m",
        workspace_size="32m",
        workspace_files=2000,
        max_log_bytes=LOG_CAP,
    )
    yield ex
    ex.close()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = World(tmp_path, monkeypatch)
    yield w
    w.close()


def test_keys_in_the_harness_environment_and_dotenv_are_out_of_reach_through_proc(
    executor: Executor, world: World
) -> None:
    run = world.run(executor, world.script(attacks.PROC_SECRETS))
    assert run.result.ok, run.log
    assert json.loads(result_of(run.log)) == {}
    run.assert_contained()


def test_host_secrets_cannot_be_read_by_path(executor: Executor, world: World) -> None:
    run = world.run(executor, world.script(attacks.PATH_SECRETS))
    assert run.result.ok, run.log
    got: dict[str, str] = json.loads(result_of(run.log))
    assert not [path for path, text in got.items() if any(s in text for s in SECRETS)], got
    assert str(world.calibration) not in got and str(world.run_dir / "journal.jsonl") not in got
    run.assert_contained()


def test_results_calibration_and_project_cannot_be_tampered_with(executor: Executor, world: World) -> None:
    run = world.run(executor, world.script(attacks.TAMPER))
    assert run.result.ok, run.log
    done = set(json.loads(result_of(run.log)))
    # Only the sandbox's own home (a tmpfs) may take a write; none reaches the host.
    assert done <= {str(world.home / ".bashrc")}, done
    run.assert_contained()


def test_the_docker_socket_is_out_of_reach(executor: Executor, world: World) -> None:
    run = world.run(executor, world.script(attacks.DOCKER_SOCKET))
    assert run.result.ok, run.log
    assert json.loads(result_of(run.log)) == {}
    run.assert_contained()


def test_no_network_not_even_the_hosts_loopback(executor: Executor, world: World) -> None:
    run = world.run(executor, world.script(attacks.NETWORK))
    assert run.result.ok, run.log
    assert json.loads(result_of(run.log)) == {}
    run.assert_contained()


def test_a_daemon_left_behind_dies_with_the_run(executor: Executor, world: World) -> None:
    token = f"speedrun-daemon-{uuid.uuid4().hex}"
    run = world.run(executor, world.script(attacks.DAEMON, token=token))
    assert run.result.ok, run.log
    assert not alive_with_token(token, wait_s=5), "a process of the run outlived it"
    run.assert_contained(settle_s=3)


def test_a_run_that_rewrites_links_or_deletes_its_script_leaves_the_hosts_copy(
    executor: Executor, world: World
) -> None:
    run = world.run(executor, world.script(attacks.SELF_EDIT))
    assert run.result.ok, run.log
    run.assert_workspace_untouched()
    run.assert_contained()


def test_disk_writes_are_bounded(executor: Executor, world: World) -> None:
    run = world.run(executor, world.script(attacks.DISK_FILL))
    assert run.result.ok, run.log
    got: dict[str, str] = json.loads(result_of(run.log))
    assert got and all(v.startswith("stopped") for v in got.values()), got
    run.assert_workspace_untouched()
    run.assert_contained()


def test_the_file_count_is_bounded(executor: Executor, world: World) -> None:
    run = world.run(executor, world.script(attacks.MANY_FILES))
    made = result_of(run.log)
    # Refused by the tmpfs (docker: nr_inodes) or the run killed by the watcher (bwrap).
    assert (made and int(made) < 50_000) or (run.result.error and "files" in run.result.error), run.log[-500:]
    run.assert_workspace_untouched()
    run.assert_contained()


def test_a_huge_line_is_cut_and_the_log_capped(executor: Executor, world: World) -> None:
    lines: list[str] = []
    run = world.run(executor, world.script(attacks.LONG_LINE), on_line=lines.append)
    assert run.result.error is not None and "log exceeded" in run.result.error
    assert world.node.joinpath("run.log").stat().st_size <= LOG_CAP + 100
    assert all(len(line) < 70_000 for line in lines)
    run.assert_contained()


def test_a_fork_bomb_meets_the_process_limit(executor: Executor, world: World) -> None:
    run = world.run(executor, world.script(attacks.FORK_BOMB), time_limit_s=60)
    assert not run.result.timed_out, run.log[-500:]
    forked = result_of(run.log)
    assert forked and int(forked) < 200, run.log[-500:]
    run.assert_contained()


def test_memory_is_bounded(executor: Executor, world: World) -> None:
    run = world.run(executor, world.script(attacks.MEMORY_HOG))
    got = result_of(run.log)
    assert "MemoryError" in got or run.result.oom or not run.result.ok, run.log[-500:]
    assert got != "4096"
    run.assert_contained()


def test_ptrace_io_uring_and_namespaces_are_denied(executor: Executor, world: World) -> None:
    run = world.run(executor, world.script(attacks.SYSCALLS))
    assert run.result.ok, run.log
    got: dict[str, Any] = json.loads(result_of(run.log))
    assert got["ptrace_attach_pid1"] != "allowed"
    assert got["io_uring_setup"] != "allowed"
    assert got["unshare_user"] != "allowed"
    run.assert_contained()


def test_setuid_files_never_reach_the_host(executor: Executor, world: World) -> None:
    run = world.run(executor, world.script(attacks.SETUID))
    assert run.result.ok, run.log
    run.assert_workspace_untouched()
    run.assert_contained()


# ---- the local executor without its sandbox -----------------------------------------------------


def test_unsandboxed_local_strips_special_bits_from_what_the_run_left(world: World) -> None:
    run = world.run(LocalExecutor(sandbox="none"), world.script(attacks.SETUID))
    assert run.result.ok, run.log
    assert (world.workspace / "suid").stat().st_mode & 0o7000 == 0
    assert (world.workspace / "open-dir").stat().st_mode & 0o002 == 0
