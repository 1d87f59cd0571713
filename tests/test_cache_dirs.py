"""flyby.utils.cache.writable_cache_dir: one rule for every tool's cache folder (numba, ultralytics)."""

from __future__ import annotations

import os

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


def test_the_kernel_cache_folder_changes_with_any_kernel_source(tmp_path, monkeypatch):
    """numba checks only the cached function's own file; the folder digest covers the files it calls."""
    import flyby.kernels as kernels

    package = tmp_path / "flyby"
    (package / "dynamics").mkdir(parents=True)
    (package / "dynamics" / "rotor_kernel.py").write_text("import numba\nK = 1.0\n")
    (package / "geometry.py").write_text("G = 9.80665\n")
    (package / "cli.py").write_text("print('hello')\n")
    before = kernels._source_digest(package)
    (package / "cli.py").write_text("print('changed')\n")  # no kernel depends on it
    assert kernels._source_digest(package) == before
    (package / "dynamics" / "rotor_kernel.py").write_text("import numba\nK = 2.0\n")
    changed = kernels._source_digest(package)
    assert changed != before
    (package / "geometry.py").write_text("G = 9.81\n")  # constants the kernels compile in
    assert kernels._source_digest(package) != changed
    # The default folder carries the installed package's digest; a set NUMBA_CACHE_DIR is kept as is.
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    kernels.configure_numba_cache()
    assert os.environ["NUMBA_CACHE_DIR"].endswith(f"kernels-{kernels.kernel_source_digest()}")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    kernels.configure_numba_cache()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "mine")
