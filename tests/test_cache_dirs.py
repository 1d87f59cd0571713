"""flyby.utils.cache.writable_cache_dir: one rule for every tool's cache folder (numba, ultralytics)."""

from __future__ import annotations

import pytest

from flyby.errors import FlybyError
from flyby.kernels import numba_cache_dir
from flyby.utils import cache


def test_override_then_checkout_then_xdg_then_temp(tmp_path, monkeypatch):
    monkeypatch.setenv("FLYBY_TEST_CACHE", str(tmp_path / "mine"))
    assert cache.writable_cache_dir("tool", "FLYBY_TEST_CACHE") == tmp_path / "mine"
    assert (tmp_path / "mine").is_dir()
    monkeypatch.delenv("FLYBY_TEST_CACHE")
    monkeypatch.setattr(cache, "_ROOT", tmp_path / "not-a-checkout")  # installed, not a checkout
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.writable_cache_dir("tool", "FLYBY_TEST_CACHE") == tmp_path / "xdg" / "flyby" / "tool"


def test_an_unusable_override_falls_through(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file: no folder can be made below it (even as root)
    monkeypatch.setenv("FLYBY_TEST_CACHE", str(blocker / "sub"))
    monkeypatch.setattr(cache, "_ROOT", tmp_path / "not-a-checkout")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.writable_cache_dir("tool", "FLYBY_TEST_CACHE") == tmp_path / "xdg" / "flyby" / "tool"


def test_nothing_writable_names_the_variable(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file: no folder can be made below it
    monkeypatch.setenv("FLYBY_TEST_CACHE", str(blocker / "a"))
    monkeypatch.setattr(cache, "_ROOT", blocker)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "xdg"))
    monkeypatch.setattr(cache.tempfile, "gettempdir", lambda: str(blocker))
    monkeypatch.setenv("HOME", str(blocker))
    with pytest.raises(FlybyError, match="no writable folder for tool's cache.*set FLYBY_TEST_CACHE"):
        cache.writable_cache_dir("tool", "FLYBY_TEST_CACHE")


def test_numba_cache_dir_follows_numba_cache_dir_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert numba_cache_dir() == tmp_path / "numba"
