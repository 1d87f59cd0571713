"""GL platform selection for MuJoCo (probes are faked except one real probe)."""

from __future__ import annotations

import os

import pytest

from flyby.errors import BackendUnavailable
from flyby.sim import gl


@pytest.fixture
def fresh(monkeypatch):
    """No cached choice and no MUJOCO_GL/PYOPENGL_PLATFORM; all restored afterwards."""
    monkeypatch.setattr(gl, "_selected", None)
    for var in ("MUJOCO_GL", "PYOPENGL_PLATFORM"):
        monkeypatch.setenv(var, "placeholder")  # so monkeypatch restores the original value
        monkeypatch.delenv(var)
    return monkeypatch


def _fake_probe(results: dict[str, tuple[bool, str]], calls: list[str]):
    def probe(platform: str, timeout_s: float = 0.0) -> tuple[bool, str]:
        calls.append(platform)
        return results[platform]

    return probe


def test_preset_mujoco_gl_is_respected_without_probing(fresh):
    fresh.setenv("MUJOCO_GL", "osmesa")
    calls: list[str] = []
    fresh.setattr(gl, "probe_platform", _fake_probe({}, calls))
    assert gl.ensure_gl_platform() == "osmesa"
    assert calls == [] and os.environ["PYOPENGL_PLATFORM"] == "osmesa"


def test_egl_first_and_choice_is_cached(fresh):
    calls: list[str] = []
    fresh.setattr(gl, "probe_platform", _fake_probe({"egl": (True, "llvmpipe")}, calls))
    assert gl.ensure_gl_platform() == "egl"
    assert gl.ensure_gl_platform() == "egl"
    assert calls == ["egl"]
    assert os.environ["MUJOCO_GL"] == "egl" and os.environ["PYOPENGL_PLATFORM"] == "egl"


def test_falls_back_to_osmesa(fresh):
    calls: list[str] = []
    fresh.setattr(
        gl, "probe_platform", _fake_probe({"egl": (False, "no EGL"), "osmesa": (True, "llvmpipe")}, calls)
    )
    assert gl.ensure_gl_platform() == "osmesa"
    assert calls == ["egl", "osmesa"] and os.environ["MUJOCO_GL"] == "osmesa"


def test_neither_platform_lists_both_errors_and_packages(fresh):
    fresh.setattr(
        gl,
        "probe_platform",
        _fake_probe({"egl": (False, "eglInitialize failed"), "osmesa": (False, "no libOSMesa")}, []),
    )
    with pytest.raises(BackendUnavailable) as info:
        gl.ensure_gl_platform()
    msg = str(info.value)
    for part in (
        "eglInitialize failed",
        "no libOSMesa",
        "libegl1 libegl-mesa0 libgl1-mesa-dri",
        "libosmesa6",
    ):
        assert part in msg
    assert "MUJOCO_GL" not in os.environ


def test_real_probe_of_the_selected_platform():
    platform = gl.ensure_gl_platform()
    if platform not in ("egl", "osmesa"):
        pytest.skip(f"MUJOCO_GL={platform!r} is set by the user; only egl/osmesa are probed")
    ok, detail = gl.probe_platform(platform)
    assert ok, detail
    assert gl.probe_platform("not-a-platform")[0] is False
