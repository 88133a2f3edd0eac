"""`speedrun doctor` and the `containers` commands, without a Docker engine (fast)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from harness.cli.containers import containers_app, doctor_command
from harness.doctor import Check, run_checks
from harness.errors import SpeedrunError
from harness.execution import base_image
from harness.execution import images as containers


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Point the SDK at a socket where nothing listens, whatever runs on this machine."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_without_an_engine_each_docker_check_says_what_to_do(no_engine: None) -> None:
    checks = _by_name(run_checks())
    engine = checks["docker engine"]
    assert not engine.ok and "no-engine.sock" in engine.detail
    assert "docker-engine.sh" in engine.fix and "--executor local" in engine.fix
    assert not checks["gpu runtime"].ok and "nvidia" in checks["gpu runtime"].fix.lower()
    image = checks["image mini"]
    assert not image.ok and "speedrun containers build --track mini" in image.fix
    assert all(c.fix for c in checks.values() if not c.ok)


def test_keys_are_reported_set_or_unset_never_by_value(
    no_engine: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-from-env")
    monkeypatch.chdir(tmp_path)
    checks = _by_name(run_checks())
    assert checks["OPENAI_API_KEY"].ok and checks["OPENAI_API_KEY"].detail == "set (environment)"
    assert not checks["ANTHROPIC_API_KEY"].ok and checks["ANTHROPIC_API_KEY"].detail == "unset"

    (tmp_path / ".env").write_text("ANTHROPIC_API_KEY=sk-canary-from-dotenv\n")
    checks = _by_name(run_checks())
    assert checks["ANTHROPIC_API_KEY"].detail == "set (./.env)"
    assert "canary" not in repr(checks)
    assert "ANTHROPIC_API_KEY" not in os.environ  # reading .env did not load it


def test_mini_data_check(no_engine: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPEEDRUN_DATA_DIR", str(tmp_path / "data"))
    check = _by_name(run_checks())["mini data"]
    assert not check.ok and str(tmp_path / "data" / "mini") in check.detail
    assert "prepare" in check.fix

    import harness.data.mini

    ready = SimpleNamespace(train_tokens=4_000_000, val_tokens_available=440_000)
    monkeypatch.setattr(harness.data.mini, "mini_data_ready", lambda data_dir: ready)
    check = _by_name(run_checks())["mini data"]
    assert check.ok and "4,000,000 train" in check.detail


def test_torch_check(no_engine: None) -> None:
    check = _by_name(run_checks())["torch"]
    assert check.ok and check.detail.startswith("torch ")


def test_doctor_command_renders_a_table(no_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-secret")
    app = typer.Typer()
    app.command("doctor")(doctor_command)
    result = CliRunner().invoke(app, [], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("docker engine", "gpu runtime", "image mini", "mini data", "OPENAI_API_KEY", "torch"):
        assert name in result.output
    assert "canary" not in result.output
    assert "✓" in result.output and "✗" in result.output


def test_containers_commands_exist() -> None:
    result = CliRunner().invoke(containers_app, ["--help"])
    assert result.exit_code == 0
    for command in ("build", "base", "prune"):
        assert command in result.output


def test_build_of_an_unknown_track_fails_before_touching_docker(no_engine: None) -> None:
    with pytest.raises(containers.BuildError, match="no Dockerfile for track 'nosuch'"):
        containers.build_image("nosuch")


def test_build_rejects_an_empty_wheelhouse(no_engine: None, tmp_path: Path) -> None:
    with pytest.raises(containers.BuildError, match=r"holds no \.whl files"):
        containers.build_image("mini", wheelhouse=tmp_path)


def test_build_without_engine_is_an_actionable_error(no_engine: None) -> None:
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match=r"cannot reach a Docker engine.*--executor local"):
        containers.build_image("mini")


def test_image_name_defaults_per_track() -> None:
    assert containers.image_name("mini") == "speedrun-mini:latest"
    assert containers.image_name("not-a-track") == "speedrun-not-a-track:latest"
    assert containers.build_context("mini") == containers.paths.containers_dir() / "cpu"
    assert (containers.build_context("mini") / "Dockerfile").is_file()


def test_build_context_holds_the_dockerfile_and_the_wheels(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.0-py3-none-any.whl").write_bytes(b"wheel")
    (wheels / "notes.txt").write_text("not a wheel")
    with containers._assembled_context(containers.build_context("mini"), wheels) as ctx:
        assert (ctx / "Dockerfile").is_file()
        assert sorted(p.name for p in (ctx / "wheelhouse").iterdir()) == ["torch-2.0-py3-none-any.whl"]
    with containers._assembled_context(containers.build_context("mini"), None) as ctx:
        assert (ctx / "wheelhouse").is_dir() and not any((ctx / "wheelhouse").iterdir())


def test_dockerfile_default_base_is_the_debootstrap_tag() -> None:
    dockerfile = containers.build_context("mini") / "Dockerfile"
    assert containers._default_base(dockerfile) == containers.DEFAULT_BASE


def test_apt_mirror_reads_both_source_formats(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    one_line = tmp_path / "sources.list"
    one_line.write_text("# comment\ndeb [arch=amd64] http://local.example/debian/ bookworm main\n")
    disabled = tmp_path / "x.list.disabled"
    disabled.write_text("deb http://wrong.example/debian bookworm main\n")
    assert base_image.apt_mirror([disabled, deb822]) == "http://mirror.example/debian"
    assert base_image.apt_mirror([one_line]) == "http://local.example/debian"
    assert base_image.apt_mirror([disabled]) == "http://deb.debian.org/debian"


def test_prune_without_engine_is_a_one_line_error(no_engine: None) -> None:
    result = CliRunner().invoke(containers_app, ["prune"])
    assert result.exit_code == 2
    assert "cannot reach a Docker engine" in result.output
    assert "Traceback" not in result.output


def test_build_of_an_unknown_track_is_a_one_line_error(no_engine: None) -> None:
    result = CliRunner().invoke(containers_app, ["build", "--track", "nosuch"])
    assert result.exit_code == 2
    assert "no Dockerfile for track 'nosuch'" in result.output
    assert "Traceback" not in result.output


def test_doctor_says_which_isolation_local_runs_get(no_engine: None) -> None:
    from harness.execution import bwrap

    check = _by_name(run_checks())["local isolation"]
    if bwrap.unavailable() is None:
        assert check.ok and check.detail.startswith("bubblewrap")
        assert "no network" in check.detail
    else:
        assert not check.ok and "sandbox=none" in check.fix and "bubblewrap" in check.fix


def test_build_makes_its_wheelhouse_from_this_machines_versions(
    no_engine: None, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --wheelhouse the mini image installs this machine's torch (its CPU build), numpy and onnx,
    from a wheelhouse in the cache; one that already holds them is reused without pip."""
    from importlib.metadata import version

    pins = containers.host_pins(containers.WHEELHOUSE_PACKAGES["cpu"])
    assert pins[:2] == [f"torch=={version('torch').split('+')[0]}+cpu", f"numpy=={version('numpy')}"]
    # What the CPU Dockerfile installs from the wheelhouse, every one of them.
    dockerfile = (containers.build_context("mini") / "Dockerfile").read_text()
    assert all(name in dockerfile for name in containers.WHEELHOUSE_PACKAGES["cpu"])
    dest = isolated_cache / "wheelhouse" / "cpu"
    dest.mkdir(parents=True)
    for pin in pins:
        (dest / f"{pin.replace('==', '-')}-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    said: list[str] = []
    monkeypatch.setenv("PATH", "/nonexistent")  # no pip, no docker: nothing may be started
    assert containers.host_wheelhouse("cpu", progress=said.append) == dest
    assert said and "holds" in said[0]
    # With no engine, the build then fails on the engine, not on pip inside the build.
    with pytest.raises(SpeedrunError, match="Docker engine"):
        containers.build_image("mini")
