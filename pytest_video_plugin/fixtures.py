"""The ``video_recorder`` fixture, per-test state and the file naming of videos and metrics.

Each session writes into its own run folder (:mod:`.evidence`): ``<video-dir>/runs/<run id>/<stem>.mp4``
and ``<video-dir>/../metrics/runs/<run id>/<stem>.json``; when a test finishes, the plugin points the
"latest" view ``<video-dir>/<name>.mp4`` and ``<video-dir>/../metrics/<name>.json`` at them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from .errors import VideoDirError
from .evidence import RunFolders, RunLock, publish_latest
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
    "publish_latest_view",
    "settings_key",
    "state_key",
    "video_recorder",
    "video_stem",
]

log = logging.getLogger(__name__)

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
        run_id: this session's run folder name (:func:`~pytest_video_plugin.evidence.new_run_id`;
            under xdist the controller's, handed to every worker).
        prune_keep: ``--video-prune-keep``: earlier runs to keep, or None to prune nothing.
    """

    video_dir: Path
    fps: float
    mode: str = "on"
    embed: str = "link"
    every_n: int = 1
    embed_max_bytes: int = 25 * 10**6
    run_id: str = ""
    prune_keep: int | None = None

    def with_overrides(self, overrides: dict[str, Any]) -> VideoSettings:
        """Copy with the given fields replaced (``video(...)`` marker values, already validated)."""
        return replace(self, **overrides) if overrides else self

    @property
    def metrics_dir(self) -> Path:
        """Folder of the latest metrics JSON files: ``<video_dir>/../metrics``."""
        return self.video_dir.parent / "metrics"

    @property
    def folders(self) -> RunFolders:
        """This session's run folders and the latest view.

        Raises:
            RuntimeError: ``run_id`` is empty (the plugin always sets it).
        """
        if not self.run_id:
            raise RuntimeError("VideoSettings.run_id is empty: the plugin sets it in pytest_configure")
        return RunFolders(self.run_id, self.video_dir, self.metrics_dir)


@dataclass
class VideoTestState:
    """Per-test state stored on the item under :data:`state_key`.

    Attributes:
        recorder: the test's recorder.
        settings: the test's settings (session settings with its ``video(...)`` markers applied).
        properties_added: True once the metrics were appended to ``item.user_properties``.
        reported: True once the call report carried the recorder's outcome (errors included), so
            the fixture's teardown does not report them a second time.
        published: True once the latest view was updated (or deliberately left alone) for this test.
    """

    recorder: VideoRecorder
    settings: VideoSettings | None = None
    properties_added: bool = False
    reported: bool = False
    published: bool = False


settings_key = pytest.StashKey[VideoSettings]()
#: This process's shared lock on the run folder (taken by the first test that records).
run_lock_key = pytest.StashKey[RunLock]()
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
        (empty on repeated calls), or None when the test did not use ``video_recorder``. Errors
        (encoder, metrics JSON) are in the result, not raised.
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


def publish_latest_view(
    state: VideoTestState, result: RecorderResult, video: Path | None
) -> tuple[Path | None, Path | None]:
    """Point the "latest" view at this test's finished files (called once per test, on the process
    that ran it, after the final metrics JSON is written).

    ``<video-dir>/<name>.mp4`` shows ``video`` and ``<video-dir>/../metrics/<name>.json`` the run's
    metrics JSON, ``name`` being ``recorder.latest_name``. Nothing is ever removed from the view: a
    test that kept no video (``--video-mode=off``, or deleted by ``retain-on-failure``) leaves the
    latest video as it was, and a test whose recording failed (a full disk) leaves the whole view as
    it was. Errors are logged, not raised: the run's own files are intact whatever happens here.

    Returns:
        (latest video, latest metrics JSON), each None when not updated.
    """
    state.published = True
    if result.error is not None:
        return None, None
    settings = state.settings
    assert settings is not None
    name = state.recorder.latest_name
    updated: list[Path | None] = [None, None]
    sources = ((0, video, settings.video_dir / f"{name}.mp4"),)
    if result.metrics_error is None and result.metrics_path is not None:
        sources += ((1, result.metrics_path, settings.metrics_dir / f"{name}.json"),)
    for slot, source, target in sources:
        if source is None or not source.is_file():
            continue
        try:
            updated[slot] = publish_latest(source, target)
        except OSError as exc:
            log.warning(
                "the latest view %s was not updated (the run's file %s is intact): %s", target, source, exc
            )
    return updated[0], updated[1]


def _hold_run_lock(config: pytest.Config, folders: RunFolders) -> None:
    """Hold the run's shared lock in this process until pytest unconfigures (so ``--video-prune-keep``
    in another session never deletes a run in progress)."""
    if run_lock_key in config.stash:
        return
    lock = RunLock(folders)
    try:
        lock.acquire()
    except OSError as exc:
        log.warning(
            "cannot lock the video run folder %s (pruning could delete it): %s", lock.path.parent, exc
        )
        return
    config.stash[run_lock_key] = lock
    config.add_cleanup(lock.release)


def _unused_stem(folders: RunFolders, stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... when this run already holds files of that name (the same
    test id run twice in one session, e.g. by a rerun plugin): a run never overwrites its own evidence."""
    unique, n = stem, 1
    while (folders.run_video_dir / f"{unique}.mp4").exists() or (
        folders.run_metrics_dir / f"{unique}.json"
    ).exists():
        n += 1
        unique = f"{stem}-{n}"
    return unique


@pytest.fixture
def video_recorder(request: pytest.FixtureRequest) -> Iterator[VideoRecorder]:
    """A :class:`~pytest_video_plugin.recorder.VideoRecorder` writing this test's video and metrics.

    Files of this run (never touched by another run):
    ``<video-dir>/runs/<run id>/<stem>.mp4`` (a fragmented MP4 while recording, so it plays even
    after a kill; ``+faststart`` once finished) and ``<video-dir>/../metrics/runs/<run id>/<stem>.json``
    (written while recording and when finished), with ``stem = video_stem(nodeid)``. When the test
    finishes the "latest" view is updated atomically: ``<video-dir>/<name>.mp4`` and
    ``<video-dir>/../metrics/<name>.json``, where ``name`` is ``stem`` or the name given with
    ``video_recorder.set_latest_name("render_skip_validation")`` (a plain file stem; ``ValueError``
    otherwise). ``video_recorder.set_name(stem)`` renames the run's files and the latest name together.
    Settings come from the ini file, then the command line, then the test's ``video(...)`` markers.
    The recorder is finalized right after the test body (in ``pytest_runtest_makereport``), even when
    the test fails, so the video is attached to the call report; this fixture's teardown finalizes
    it too, for runs interrupted by Ctrl-C or SIGTERM.

    Raises:
        VideoDirError: the video or metrics folder cannot be created or written.
    """
    item = request.node
    plan = item.stash.get(plan_key, None)
    settings = request.config.stash[settings_key].with_overrides(dict(plan.video) if plan else {})
    folders = settings.folders
    if settings.mode != "off":
        ensure_writable_dir(folders.run_video_dir, "video")
    ensure_writable_dir(folders.run_metrics_dir, "metrics")
    _hold_run_lock(request.config, folders)
    stem = _unused_stem(folders, video_stem(item.nodeid))
    recorder = VideoRecorder(
        folders.run_video_dir / f"{stem}.mp4",
        metrics_path=folders.run_metrics_dir / f"{stem}.json",
        fps=settings.fps,
        test_name=display_name(item.nodeid),
        phase=find_phase(item),
        draw_hook=item.ihook.pytest_video_draw_overlays,
        every_n=settings.every_n,
        record_video=settings.mode != "off",
    )
    if stem != video_stem(item.nodeid):
        recorder.set_latest_name(video_stem(item.nodeid))
    state = VideoTestState(recorder, settings)
    item.stash[state_key] = state
    recorder.start()
    try:
        yield recorder
    finally:
        finished = finish_recording(item)
        if finished is not None and not state.reported:  # the call report never came (interrupted)
            result = finished[0]
            for error in (result.error, result.metrics_error):
                if error is not None:
                    raise error
            if not state.published:
                publish_latest_view(state, result, result.video_path)
