"""The ``video_recorder`` fixture, per-test state and the file naming of videos and metrics."""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from .errors import VideoDirError
from .markers import TestPlan
from .recorder import RecorderResult, VideoRecorder

__all__ = [
    "VideoSettings",
    "VideoTestState",
    "display_name",
    "ensure_writable_dir",
    "find_phase",
    "finish_recording",
    "plan_key",
    "settings_key",
    "state_key",
    "video_recorder",
    "video_stem",
]

#: Longest file stem written; longer test ids are cut and suffixed with a hash of the full id.
MAX_STEM_CHARS = 150
_PHASE_MARKER = re.compile(r"phase[1-9][0-9]*")


@dataclass(frozen=True)
class VideoSettings:
    """Resolved plugin options.

    Attributes:
        video_dir: absolute folder for MP4s.
        fps: video frame rate, frames/s.
        mode: ``"on"``, ``"off"`` (metrics only, no video) or ``"retain-on-failure"`` (videos of
            tests whose call phase passed are deleted).
        embed: ``"link"`` or ``"inline"`` (base64 inside a ``--self-contained-html`` report).
        every_n: encode every Nth frame handed to ``add_frame``.
        embed_max_bytes: cap on the inline videos of one report, bytes.
    """

    video_dir: Path
    fps: float
    mode: str = "on"
    embed: str = "link"
    every_n: int = 1
    embed_max_bytes: int = 25 * 10**6

    def with_overrides(self, overrides: dict[str, Any]) -> VideoSettings:
        """Copy with the given fields replaced (``video(...)`` marker values, already validated)."""
        return replace(self, **overrides) if overrides else self

    @property
    def metrics_dir(self) -> Path:
        """Folder for metrics JSON files: ``<video_dir>/../metrics``."""
        return self.video_dir.parent / "metrics"


@dataclass
class VideoTestState:
    """Per-test state stored on the item under :data:`state_key`.

    Attributes:
        recorder: the test's recorder.
        settings: the test's settings (session settings with its ``video(...)`` markers applied).
        properties_added: True once the metrics were appended to ``item.user_properties``.
    """

    recorder: VideoRecorder
    settings: VideoSettings | None = None
    properties_added: bool = False


settings_key = pytest.StashKey[VideoSettings]()
state_key = pytest.StashKey[VideoTestState]()
#: The test's parsed markers, stored at setup by ``pytest_runtest_setup``.
plan_key = pytest.StashKey[TestPlan]()


def video_stem(nodeid: str) -> str:
    """File stem for a test: file basename and test name, characters outside [A-Za-z0-9_.-] as ``_``.

    ``"tests/fullstack/test_phase3.py::test_grid_video[16]"`` ->
    ``"test_phase3.py__test_grid_video_16"``. The folder part is dropped for readability (test file
    basenames are unique under pytest's default import mode). Test names or parameter ids with other
    characters (``[a/b]``, ``[x y]``) and ids over 150 characters end with ``-`` and 8 hex digits of
    the full id's SHA-1, so two ids never map to one file.
    """
    path, _, rest = nodeid.partition("::")
    name = path.rsplit("/", 1)[-1]
    if rest:
        name = f"{name}__{rest.replace('::', '__')}"
    # characters that become "_" make ids such as "[a/b]" and "[a_b]" collide: those get a hash
    lossy = re.search(r"[^A-Za-z0-9_.\-\[\]]", rest.replace("::", "")) is not None
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    name = re.sub(r"_{3,}", "__", name).strip("_").lstrip(".") or "test"
    digest = hashlib.sha1(nodeid.encode("utf-8")).hexdigest()[:8]
    if len(name) > MAX_STEM_CHARS:
        name = f"{name[: MAX_STEM_CHARS - 9]}-{digest}"
    elif lossy:
        name = f"{name}-{digest}"
    return name


def display_name(nodeid: str) -> str:
    """Test id without its folders, for the video header: ``"test_phase3.py::test_grid_video"``."""
    path, sep, rest = nodeid.partition("::")
    return path.rsplit("/", 1)[-1] + sep + rest


def find_phase(item: pytest.Item) -> str | None:
    """Name of the closest marker named ``phase<N>`` (e.g. ``"phase3"``), or None."""
    for marker in item.iter_markers():
        if _PHASE_MARKER.fullmatch(marker.name):
            return marker.name
    return None


def ensure_writable_dir(path: Path, what: str) -> None:
    """Create ``path`` if needed and check that a file can be created in it.

    Raises:
        VideoDirError: naming the folder, the OS error and the fix.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".pytest-video-write-check-"):
            pass
    except OSError as exc:
        raise VideoDirError(
            f"{what} folder {path} is not writable ({type(exc).__name__}: {exc.strerror or exc}). "
            "Fix: pass --video-dir=<writable folder> (metrics go to its sibling 'metrics' folder), "
            "set 'video_dir' in the pytest ini options, or make that folder writable."
        ) from exc


def finish_recording(item: pytest.Item) -> tuple[RecorderResult, list[tuple[str, Any]]] | None:
    """Finalize the item's recorder (idempotent) and add its metrics to ``item.user_properties`` once.

    Returns:
        ``(result, new_properties)`` where ``new_properties`` are the pairs added by this call
        (empty on repeated calls), or None when the test did not use ``video_recorder``.

    Raises:
        OSError: the metrics JSON could not be written.
    """
    state = item.stash.get(state_key, None)
    if state is None:
        return None
    result = state.recorder.finalize()
    new_properties: list[tuple[str, Any]] = []
    if not state.properties_added:
        state.properties_added = True
        new_properties = result.user_properties()
        item.user_properties.extend(new_properties)
    return result, new_properties


@pytest.fixture
def video_recorder(request: pytest.FixtureRequest) -> Iterator[VideoRecorder]:
    """A :class:`~pytest_video_plugin.recorder.VideoRecorder` writing this test's video and metrics.

    The MP4 is ``<video-dir>/<stem>.mp4`` and the metrics JSON ``<video-dir>/../metrics/<stem>.json``
    with ``stem = video_stem(nodeid)``; a video left by an earlier run under that name is deleted.
    Settings come from the ini file, then the command line, then the test's ``video(...)`` markers.
    The recorder is finalized right after the test body (in ``pytest_runtest_makereport``), even when
    the test fails, so the video is attached to the call report; this fixture's teardown finalizes
    it too, as a safety net for interrupted runs.

    Raises:
        VideoDirError: the video or metrics folder cannot be created or written.
    """
    item = request.node
    plan = item.stash.get(plan_key, None)
    settings = request.config.stash[settings_key].with_overrides(dict(plan.video) if plan else {})
    stem = video_stem(item.nodeid)
    if settings.mode != "off":
        ensure_writable_dir(settings.video_dir, "video")
    ensure_writable_dir(settings.metrics_dir, "metrics")
    video_path = settings.video_dir / f"{stem}.mp4"
    if video_path.parent.is_dir():  # with --video-mode=off the folder need not exist
        video_path.unlink(missing_ok=True)
    recorder = VideoRecorder(
        video_path,
        metrics_path=settings.metrics_dir / f"{stem}.json",
        fps=settings.fps,
        test_name=display_name(item.nodeid),
        phase=find_phase(item),
        draw_hook=item.ihook.pytest_video_draw_overlays,
        every_n=settings.every_n,
        record_video=settings.mode != "off",
    )
    item.stash[state_key] = VideoTestState(recorder, settings)
    recorder.start()
    try:
        yield recorder
    finally:
        finish_recording(item)
