"""flyby.utils.atomic: whole files or nothing, readable like files written with open()."""

from __future__ import annotations

import json
import os
import stat

import pytest

from flyby.errors import OutputError
from flyby.utils.atomic import atomic_write_bytes, atomic_write_json, check_writable


def test_write_replaces_whole_file_with_the_mode_open_gives(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"a": float("nan")})  # refused before anything is written
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # fails mid-write
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_unwritable_destination_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=f"cannot write {blocker / 'a.json'}"):
        atomic_write_bytes(blocker / "a.json", b"x")
    with pytest.raises(OutputError, match="not writable"):
        check_writable(blocker / "run")
