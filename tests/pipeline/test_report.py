"""The pipeline's HTML report: every section from a synthetic run, "not available" for missing optional
artefacts, named errors for malformed ones, escaping, atomic writes and the ``flyby report`` parser.

Reports that draw every figure cost about 2 s each on CI, so the full report is written once per module;
the other cases use runs cut down to the artefacts they are about (fewer figures).
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from fake_run import VIDEO_FPS, VIDEO_FRAMES, fake_metrics, write_fake_run

from flyby.errors import FlybyError
from flyby.pipeline import plots
from flyby.pipeline.report import (
    RunArtefactError,
    add_report_parser,
    default_report_path,
    read_progress,
    write_report,
)

SECTIONS = ("training", "evaluation", "detection", "tracks", "video", "manifest")


class Page(HTMLParser):
    """Tags (name, attrs) and the visible text of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.chunks: list[str] = []
        self.feed(text)
        self.text = " ".join(" ".join(self.chunks).split())

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.chunks.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def png_size(data_uri: str) -> tuple[int, int]:
    """(width, height) of a ``data:image/png;base64,...`` image, from its IHDR chunk."""
    prefix = "data:image/png;base64,"
    assert data_uri.startswith(prefix), data_uri[:40]
    png = base64.b64decode(data_uri[len(prefix) :], validate=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def copy_run(run_dir: Path, tmp_path: Path, name: str = "fake") -> Path:
    """A copy of ``run_dir`` at ``tmp_path/output/runs/<name>``, to damage or trim without touching
    the original."""
    target = tmp_path / "output" / "runs" / name
    shutil.copytree(run_dir, target)
    return target


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    return write_fake_run(tmp_path_factory.mktemp("pipeline") / "output")


@pytest.fixture(scope="module")
def full_report(fake_run) -> tuple[Path, Page]:
    path = write_report(fake_run)
    return path, Page(path.read_text(encoding="utf-8"))


def test_full_report_has_every_section_figure_and_the_video(fake_run, full_report):
    path, page = full_report
    assert path == fake_run.parents[1] / "reports" / "fake_report.html" == default_report_path(fake_run)
    ids = {attrs.get("id") for _, attrs in page.tags}
    assert set(SECTIONS) <= ids
    assert "not available" not in page.text
    images = page.all("img")
    assert len(images) == 3, "training curves, evaluation bars, tracks"
    for img in images:
        width, height = png_size(img["src"])
        assert width > 300 and height > 200, img["alt"]
    (video,) = page.all("video")
    assert {"controls", "muted", "playsinline"} <= set(video)
    assert video["src"] == "fake_report_assets/validation.mp4"
    copied = path.parent / video["src"]
    assert copied.read_bytes() == (fake_run / "video" / "validation.mp4").read_bytes()
    # Offline: nothing fetched from anywhere but the report's folder, no script at all.
    assert not page.all("script") and not page.all("link")
    refs = [a.get("src") or a.get("href") or "" for _, a in page.tags]
    assert not [r for r in refs if r.startswith(("http:", "https:", "//"))], refs
    assert not list(path.parent.glob(".*.tmp")), "temporary files left behind"


def test_header_names_the_run_stack_backend_and_verdict(full_report):
    _, page = full_report
    metrics = fake_metrics()["policies"]
    trained, patrol = metrics["trained"]["targets_found"], metrics["patrol"]["targets_found"]
    assert "built-in cascade (no PX4)" in page.text and "mujoco" in page.text
    assert f"Trained policy finds {trained['mean']:.2f} targets per episode" in page.text
    assert f"[{trained['ci95'][0]:.2f}, {trained['ci95'][1]:.2f}]" in page.text
    assert f"patrol {patrol['mean']:.2f} [{patrol['ci95'][0]:.2f}, {patrol['ci95'][1]:.2f}]" in page.text
    assert "more than the patrol" in page.text and "do not overlap" in page.text


def test_evaluation_table_puts_every_policy_with_its_interval_trained_first(full_report):
    path, _ = full_report
    text = path.read_text(encoding="utf-8")
    table = text[text.index('id="evaluation"') : text.index('id="detection"')]
    rows = Page(table)
    cells = [c for c in rows.chunks if c.strip()]
    positions = []
    for key, block in fake_metrics()["policies"].items():
        lo, hi = block["ci95"]
        figure = f"{block['mean_return']:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        assert figure in cells, (key, figure)
        positions.append(cells.index(figure))
        assert f"{block['coverage']['mean'] * 100:.1f} %" in cells
    assert positions == sorted(positions) and list(fake_metrics()["policies"])[0] == "trained"
    assert "geofence exits" in cells and "episodes" in cells


def test_detection_and_manifest_sections_show_the_files_figures(full_report):
    _, page = full_report
    for figure in ("0.938", "0.882", "ground_truth", "120"):
        assert figure in page.text
    assert "61.2 s" in page.text and "reason: export disabled in the config" in page.text
    assert "deadbeef" * 5 + " (clean)" in page.text
    assert "stable_baselines3 2.9.0" in page.text and "ultralytics not installed" in page.text
    assert '"budget_s": 60' in page.text  # the config, pretty-printed inside <details>
    assert page.all("details")


def test_missing_optional_artefacts_read_not_available(tmp_path):
    run = write_fake_run(tmp_path / "output", "bare", csv_rows=0, video=False, detection=False, tracks=False)
    page = Page(write_report(run).read_text(encoding="utf-8"))
    assert "not available: training/progress.csv has no rows yet" in page.text
    assert "not available: evaluation/metrics.json has no detection block" in page.text
    assert "not available: evaluation/tracks.json does not exist" in page.text
    assert "not available: video/validation.mp4 does not exist" in page.text
    assert not page.all("video") and not (tmp_path / "output" / "reports" / "bare_report_assets").exists()
    assert len(page.all("img")) == 1  # the evaluation bars are still there


def test_a_run_with_only_its_manifest_still_reports(tmp_path):
    run = write_fake_run(tmp_path / "output", "early", video=False, metrics=False, tracks=False)
    (run / "training" / "progress.csv").unlink()
    page = Page(write_report(run).read_text(encoding="utf-8"))
    assert "Verdict not available: evaluation/metrics.json does not exist" in page.text
    assert "(stage 'evaluate': done)" in page.text  # what the manifest says about the missing stage
    assert page.text.count("not available:") >= 5
    assert not page.all("img")


@pytest.fixture(scope="module")
def worse_report(tmp_path_factory) -> Page:
    """A run where the patrol finds more than the trained policy, with HTML in strings from the files."""
    out = tmp_path_factory.mktemp("worse") / "output"
    run = write_fake_run(out, "worse", csv_rows=0, video=False, tracks=False)
    metrics = fake_metrics()
    metrics["policies"]["trained"]["targets_found"].update(mean=1.0, ci95=[0.5, 1.5])
    metrics["policies"]["trained"]["label"] = "<script>alert('trained')</script>"
    # flyby.training.evaluate writes the interval of a single episode as null (JSON has no NaN).
    metrics["policies"]["zero"].update(ci95=None, mean_return=-3.0)
    metrics["policies"]["zero"]["targets_found"]["ci95"] = None
    metrics.update(detection=None, detection_note="perception ran in <ground_truth> mode")
    (run / "evaluation" / "metrics.json").write_text(json.dumps(metrics))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["export"]["reason"] = "<img src=x onerror=alert(1)>"
    manifest["config"]["note"] = "</pre><b>bold</b>"
    # As flyby.pipeline.run leaves a stage stopped by Ctrl-C: cleared fields are null.
    manifest["stages"]["video"] = {
        "status": "interrupted",
        "wall_s": 3.0,
        "finished_utc": None,
        "error": None,
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    return Page(write_report(run).read_text(encoding="utf-8"))


def test_verdict_says_fewer_when_the_patrol_finds_more(worse_report):
    assert "fewer than the patrol" in worse_report.text and "do not overlap" in worse_report.text


def test_a_null_interval_reads_as_one_episode(worse_report):
    assert "-3.00 [— (n = 1)]" in worse_report.text


def test_detection_note_says_why_there_are_no_detection_figures(worse_report):
    assert (
        "has no detection block (detection: null): perception ran in <ground_truth> mode" in worse_report.text
    )


def test_an_interrupted_stage_is_shown_not_refused(worse_report):
    assert "video/validation.mp4 does not exist" in worse_report.text
    assert "(stage 'video': interrupted)" in worse_report.text
    assert "video interrupted 3.0 s" in worse_report.text and "error: null" not in worse_report.text


def test_strings_from_files_are_escaped(worse_report):
    assert not worse_report.all("script") and not worse_report.all("b")[1:]  # only the verdict's own <b>
    assert all(img["src"].startswith("data:image/png") for img in worse_report.all("img"))
    assert "<script>alert('trained')</script>" in worse_report.text  # shown as text
    assert "<img src=x onerror=alert(1)>" in worse_report.text
    assert "</pre><b>bold</b>" in worse_report.text


def test_custom_out_path_puts_the_video_beside_it_and_rewrites_atomically(tmp_path, fake_run):
    run = copy_run(fake_run, tmp_path)
    for rel in ("training/progress.csv", "evaluation/metrics.json", "evaluation/tracks.json"):
        (run / rel).unlink()  # no figures: this test is about files
    out = tmp_path / "elsewhere" / "r.html"
    assert write_report(run, out) == out
    (video,) = Page(out.read_text(encoding="utf-8")).all("video")
    assert (
        video["src"] == "r_assets/validation.mp4" and (out.parent / "r_assets" / "validation.mp4").is_file()
    )
    first = out.stat().st_ino
    write_report(run, out)
    assert out.stat().st_ino != first, "rewritten through a new file (os.replace), not in place"
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.html", "r_assets"]
    assert [p.name for p in (out.parent / "r_assets").iterdir()] == ["validation.mp4"]


def _damage(run: Path, rel: str, edit) -> None:
    path = run / rel
    if rel.endswith(".json"):
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
    else:
        path.write_text(edit(path.read_text()))


BAD_ARTEFACTS = {
    "manifest-not-json": (
        "manifest.json",
        None,
        ["manifest.json", "not valid JSON", "line 1", "re-run `flyby pipeline NAME`"],
    ),
    "manifest-schema-and-status": (
        "manifest.json",
        lambda d: d.update(schema="flyby.run/0", stages={"train": {"status": "finished", "wall_s": -1}}),
        [
            "3 problem(s)",
            "schema: expected 'flyby.run/1', got 'flyby.run/0'",
            "stages.train.wall_s: expected a finite number >= 0.0, got -1",
            "stages.train.status: expected one of ['done', 'skipped', 'failed', 'pending', 'running', "
            "'interrupted'], got 'finished'",
        ],
    ),
    "metrics-types-and-ranges": (
        "evaluation/metrics.json",
        lambda d: (
            d["policies"]["trained"].update(ci95="wide", success_rate=1.5),
            d["detection"].update(precision="high"),
        ),
        [
            "metrics.json",
            "policies.trained.ci95: expected two numbers",
            "got 'wide'",
            "policies.trained.success_rate: expected a finite number in [0.0, 1.0], got 1.5",
            "detection.precision: expected a number, got 'high'",
            "'evaluate' stage",
        ],
    ),
    "metrics-no-policies": ("evaluation/metrics.json", lambda d: d.update(policies={}), ["policies: empty"]),
    "csv-bad-cell": (
        "training/progress.csv",
        lambda t: t.replace("\n65536,", "\nabc,", 1),
        ["progress.csv", "line 3, column env_steps: 'abc' is not a number", "'train' stage"],
    ),
    "csv-missing-column": (
        "training/progress.csv",
        lambda t: t.replace("ep_len_mean", "episode_length", 1),
        ["missing column(s) ['ep_len_mean']"],
    ),
    "csv-short-row": (
        "training/progress.csv",
        lambda t: t.rstrip("\n") + "\n1,2\n",
        ["2 cells, the header has 18"],
    ),
    "tracks-building": (
        "evaluation/tracks.json",
        lambda d: d["buildings"].append([5, 5, 1, 9]),
        ["tracks.json", "buildings[3]: expected [xmin, ymin, xmax, ymax] with min < max"],
    ),
    "tracks-points": (
        "evaluation/tracks.json",
        lambda d: d["episodes"][2].update(xy=[[0, 1], [2]]),
        ["episodes[2].xy: expected a list of finite [x, y] pairs, got [2]"],
    ),
    "video-not-mp4": ("video/validation.mp4", lambda t: "not a video", ["validation.mp4", "is not an MP4"]),
}


@pytest.mark.parametrize("case", list(BAD_ARTEFACTS))
def test_malformed_artefact_raises_naming_the_file_and_problems(tmp_path, fake_run, case):
    rel, edit, expected = BAD_ARTEFACTS[case]
    run = copy_run(fake_run, tmp_path)
    if edit is None:
        (run / rel).write_text('{"schema": "flyby.run/1",')
    elif rel.endswith(".mp4"):
        (run / rel).write_bytes(b"not a video at all")
    else:
        _damage(run, rel, edit)
    with pytest.raises(RunArtefactError) as info:
        write_report(run)
    assert isinstance(info.value, FlybyError) and info.value.path == run / rel
    for text in expected:
        assert text in str(info.value), str(info.value)
    assert not default_report_path(run).exists(), "no report from a malformed run"


def test_not_a_run_folder(tmp_path):
    with pytest.raises(RunArtefactError, match="is not a folder"):
        write_report(tmp_path / "output" / "runs" / "nope")
    (tmp_path / "output" / "runs" / "empty").mkdir(parents=True)
    with pytest.raises(RunArtefactError, match=r"manifest\.json: 1 problem\(s\):\n  - does not exist"):
        write_report(tmp_path / "output" / "runs" / "empty")


def test_read_progress_empty_cells_header_only_and_empty_file(tmp_path):
    path = tmp_path / "progress.csv"
    path.write_text(
        "env_steps,ep_rew_mean,ep_len_mean,Episode_Reward/jerk,Episode_Return/jerk,Episode_Return/coverage\n"
        "100,,,,,\n200,1.5,30,-0.005,-0.3,0.4\n"
    )
    progress = read_progress(path)
    assert progress.rows == 2 and progress.env_steps.tolist() == [100.0, 200.0]
    assert np.isnan(progress.columns["ep_rew_mean"][0]) and progress.columns["ep_rew_mean"][1] == 1.5
    # The per-term panels are the episode sums (Episode_Return/), not IsaacLab's per-second Episode_Reward/.
    assert list(progress.reward_terms) == ["jerk", "coverage"]
    assert progress.reward_terms["jerk"][1] == -0.3
    assert np.isnan(progress.column("fps")).all()
    path.write_text("env_steps,ep_rew_mean,ep_len_mean\n")
    assert read_progress(path).rows == 0
    path.write_text("")
    assert read_progress(path).rows == 0
    path.write_text("env_steps,ep_rew_mean,ep_len_mean,ep_rew_mean\n")
    with pytest.raises(RunArtefactError, match=r"\['ep_rew_mean'\] appear more than once"):
        read_progress(path)
    path.write_text("env_steps,ep_rew_mean,ep_len_mean\n,1,2\n")
    with pytest.raises(RunArtefactError, match="line 2, column env_steps: empty"):
        read_progress(path)


def test_error_pickles_with_its_attributes(tmp_path):
    import pickle

    err = pickle.loads(pickle.dumps(RunArtefactError(tmp_path / "x.json", ["a", "b"], "Fix: redo")))
    assert err.path == tmp_path / "x.json" and err.problems == ["a", "b"] and str(err).endswith("Fix: redo")


def test_plots_reject_series_of_the_wrong_length():
    with pytest.raises(ValueError, match="series 'return' has shape \\(2,\\), env_steps has \\(3,\\)"):
        plots.training_curves_png(np.arange(3), {"return": np.zeros(2)}, {})
    with pytest.raises(ValueError, match="one entry per policy"):
        plots.evaluation_png(["trained"], ["t", "x"], [1.0], [(0.0, 2.0)], [1.0], [(0.0, 2.0)])


def test_policy_colours_are_fixed_and_distinct():
    keys = ["trained", "patrol", "mystery", "other"]
    colours = [plots.policy_colour(k, keys) for k in keys]
    assert len(set(colours)) == 4 and colours[0] == plots.POLICY_COLOURS["trained"]


def test_report_subcommand(tmp_path):
    run = write_fake_run(tmp_path / "output", "cli", video=False, metrics=False, tracks=False, csv_rows=0)
    parser = argparse.ArgumentParser(prog="flyby")
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "cli.html"
    args = parser.parse_args(["report", str(run), "--out", str(out)])
    assert args.func(args) == 0 and out.is_file()
    args = parser.parse_args(["report", str(run)])
    assert args.func(args) == 0 and default_report_path(run).is_file()
    assert default_report_path(run) == tmp_path / "output" / "reports" / "cli_report.html"


def test_fake_video_is_what_the_browser_test_expects(fake_run):
    av = pytest.importorskip("av")
    with av.open(str(fake_run / "video" / "validation.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert container.duration / 1e6 == pytest.approx(VIDEO_FRAMES / VIDEO_FPS, rel=0.1)
