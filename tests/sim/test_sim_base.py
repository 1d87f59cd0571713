"""Backend selection and the backend factory (no rendering)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flyby.enums import BackendKind
from flyby.errors import BackendUnavailable, ConfigError
from flyby.perception.camera import CameraCfg
from flyby.sim import base
from flyby.sim.base import BACKEND_ENV_VAR, make_backend, select_backend_kind


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)


def test_default_is_mujoco_without_isaac(no_env, monkeypatch):
    monkeypatch.setattr(base, "_module_exists", lambda name: False)
    assert select_backend_kind() is BackendKind.MUJOCO


def test_env_var_picks_backend(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV_VAR, "ISAAC")
    assert select_backend_kind() is BackendKind.ISAAC
    monkeypatch.setenv(BACKEND_ENV_VAR, "mujoco")
    assert select_backend_kind() is BackendKind.MUJOCO


def test_explicit_beats_env(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV_VAR, "isaac")
    assert select_backend_kind("mujoco") is BackendKind.MUJOCO
    assert select_backend_kind(BackendKind.MUJOCO) is BackendKind.MUJOCO
    monkeypatch.setenv(BACKEND_ENV_VAR, "mujoco")
    assert select_backend_kind(BackendKind.ISAAC) is BackendKind.ISAAC


@pytest.mark.parametrize("bad", ["vulkan", "", 3])
def test_bad_explicit_value_names_value_and_choices(no_env, bad):
    with pytest.raises(ConfigError) as info:
        select_backend_kind(bad)
    msg = str(info.value)
    assert repr(bad) in msg and "mujoco" in msg and "isaac" in msg


def test_bad_env_value_is_a_value_error(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV_VAR, "gazebo")
    with pytest.raises(ValueError, match="gazebo") as info:
        select_backend_kind()
    assert BACKEND_ENV_VAR in str(info.value)


def test_auto_isaac_needs_package_backend_module_and_gpu(no_env, monkeypatch):
    present = {"isaacsim"}
    monkeypatch.setattr(base, "_module_exists", lambda name: name in present)
    monkeypatch.setattr(base, "nvidia_gpu_visible", lambda: True)
    # isaacsim importable and a GPU, but no flyby Isaac backend module: stay on MuJoCo.
    assert select_backend_kind() is BackendKind.MUJOCO
    present.add("flyby.sim.isaac_backend")
    assert select_backend_kind() is BackendKind.ISAAC
    monkeypatch.setattr(base, "nvidia_gpu_visible", lambda: False)
    assert select_backend_kind() is BackendKind.MUJOCO


def test_nvidia_gpu_visible_returns_bool():
    assert isinstance(base.nvidia_gpu_visible(), bool)


def test_make_backend_isaac_is_unavailable(world):
    with pytest.raises(BackendUnavailable, match="FLYBY_BACKEND=mujoco") as info:
        make_backend("isaac", world, 1, CameraCfg())
    assert "Isaac Sim not importable" in str(info.value)
    assert "podman/README.md" in str(info.value)  # where Isaac Sim runs


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_px4_env_honours_the_backend_choice(how, monkeypatch):
    """PX4ISR-v0 builds the chosen backend (it built MuJoCo whatever the choice until issue 14)."""
    from flyby.envs.px4_env import PX4ISREnv

    kwargs = {"backend": "isaac"} if how == "argument" else {}
    if how == "environment":
        monkeypatch.setenv("FLYBY_BACKEND", "isaac")
    with pytest.raises(BackendUnavailable, match="podman/README.md"):
        PX4ISREnv(flight_stack="cascade", **kwargs)
    monkeypatch.setenv("FLYBY_BACKEND", "physx")
    with pytest.raises(ConfigError, match="'physx' is not a simulator backend; allowed: mujoco, isaac"):
        PX4ISREnv(flight_stack="cascade")


def test_make_backend_rejects_bad_kind(world):
    with pytest.raises(ConfigError, match="'physx'"):
        make_backend("physx", world, 1, CameraCfg())


def test_importing_flyby_sim_imports_no_simulator():
    code = (
        "import sys, flyby, flyby.sim, flyby.sim.base, flyby.sim.tiling, flyby.sim.gl; "
        "bad = [m for m in ('mujoco', 'isaacsim', 'OpenGL', 'pynvml') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
