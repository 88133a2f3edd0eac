#!/usr/bin/env bash
# Make a Docker engine and the mini track's image available for the docker tests.
#
# Idempotent: an engine that already answers is used as it is, and images that
# exist are not rebuilt. Without one (a fresh CI machine) it installs Debian's
# docker.io, starts dockerd with its own data root and without touching the
# host's networking (no bridge, no iptables rules), makes a base image with
# debootstrap (no registry needed) and builds the CPU image from a wheelhouse.
#
# It never fails the CI run: when something cannot be done it says why and
# exits 0, and the docker tests then skip with that reason.
#
# Environment: PYTHON (default python), SPEEDRUN_DOCKER_ROOT (engine state,
# default /var/lib/speedrun-docker), SPEEDRUN_CACHE (wheelhouse cache).
set -u

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DOCKER_ROOT=${SPEEDRUN_DOCKER_ROOT:-/var/lib/speedrun-docker}
DOCKERD_LOG=/var/log/speedrun-dockerd.log
T0=$SECONDS

say() { echo "[docker-engine] $*"; }
give_up() { say "SKIPPING docker setup: $*"; say "the docker tests will be skipped"; exit 0; }
elapsed() { echo "$((SECONDS - T0))s"; }

engine_up() { "$PYTHON" -c "import docker; docker.from_env(timeout=5).ping()" >/dev/null 2>&1; }

start_engine() {
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
        [ "$(id -u)" = 0 ] || give_up "no Docker engine and not root, so docker.io cannot be installed"
        say "installing docker.io and debootstrap with apt"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null 2>&1 || give_up "apt-get update failed"
        apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null 2>&1 \
            || give_up "apt-get install docker.io debootstrap failed"
        say "installed ($(elapsed))"
    fi
    [ "$(id -u)" = 0 ] || give_up "dockerd must be started as root"
    mkdir -p "$DOCKER_ROOT"
    # The default socket, so that the docker SDK and CLI find the engine without DOCKER_HOST;
    # everything else (state, pid file, runtime dir) is kept apart from a system engine.
    say "starting dockerd (data root $DOCKER_ROOT, no bridge, no iptables; log $DOCKERD_LOG)"
    setsid nohup dockerd \
        --data-root "$DOCKER_ROOT" \
        --exec-root /run/speedrun-docker \
        --pidfile /run/speedrun-docker.pid \
        --host unix:///var/run/docker.sock \
        --bridge=none --iptables=false --ip6tables=false \
        >"$DOCKERD_LOG" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        engine_up && { say "engine answers ($(elapsed))"; return 0; }
        sleep 0.5
    done
    give_up "dockerd did not answer within 60s; last log lines: $(tail -3 "$DOCKERD_LOG" 2>/dev/null | tr '\n' ' ')"
}

if engine_up; then
    say "a Docker engine is already running; using it"
else
    start_engine
fi

# Images: the base from debootstrap, then the mini image from a wheelhouse of this machine's
# own torch and numpy (same versions as the local executor, so timings compare), which
# `build_image` makes in the cache (SPEEDRUN_CACHE) from the index this machine's pip reaches.
"$PYTHON" - <<'EOF' || give_up "building the images failed (see above)"
import sys
import time

from harness.execution import base_image
from harness.execution import images as containers
from harness.errors import SpeedrunError

say = lambda msg: print(f"[docker-engine] {msg}", flush=True)
try:
    client = containers.docker_client(timeout=containers.BUILD_TIMEOUT_S)
    mini = containers.image_name("mini")
    if containers.image_exists(client, mini):
        # An image built before the records saved ONNX models lacks the exporter: build it again.
        try:
            client.containers.run(mini, ["python", "-c", "import onnx, onnxscript"], remove=True, network_mode="none")
            say(f"{mini} already present; nothing to build")
            sys.exit(0)
        except Exception as exc:  # noqa: BLE001 - any failure means the image cannot run today's records
            say(f"{mini} is out of date ({type(exc).__name__}); building it again")
    t = time.monotonic()
    base_image.base_image_from_debootstrap(progress=say)
    say(f"base image ready in {time.monotonic() - t:.0f}s")
    t = time.monotonic()
    # Without --wheelhouse the build makes one in the cache from this machine's own index.
    quiet = lambda line: say(line) if line.startswith(("wheelhouse", "downloading", "built")) else None
    containers.build_image("mini", progress=quiet)
    say(f"built {mini} in {time.monotonic() - t:.0f}s")
except SpeedrunError as exc:
    say(f"error: {exc}")
    sys.exit(1)
EOF
say "done in $(elapsed)"
