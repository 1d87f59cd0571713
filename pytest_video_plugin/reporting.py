"""What only the controller does: hold and prune run folders, cap inline videos, and report.

Under pytest-xdist the workers run the tests and the controller receives their reports; the
per-test data rides on each report as the ``pytest_video`` attribute (a dict of JSON types, which
pytest's report serialization carries across like any other report attribute). The
:class:`VideoSessionReport` plugin is registered only where ``config`` has no ``workerinput``, so
exactly one process:

* hands its run id to the xdist workers (``pytest_configure_node``), so one session writes one run
  folder whichever process ran a test;
* only when asked with ``--video-prune-keep=N``, deletes the folders of all but the N newest earlier
  finished runs at session start (runs whose :class:`~pytest_video_plugin.evidence.RunLock` is held
  are never deleted). No other file of an earlier run is ever touched;
* enforces the per-report cap of ``--video-embed=inline``;
* adds the FPS / VRAM / RSS / verdict columns and the phase-gate summary (with each test's
  ``set_header`` fields) to the pytest-html report
  (hooks marked optional: pytest-html need not be installed); floor checks (``check_floor``) show
  in the FPS column and the gate's figure cell, "not reachable here" with floor and ceiling;
* prints threshold and floor-check verdicts (and the test's header fields) and refused embeds in the
  terminal summary;
* writes the run's index ``<metrics>/runs/<run id>/run.json`` at session end (start and end time,
  exit status, the files written) when the session wrote any.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from .evidence import RUN_INDEX_NAME, atomic_write_json, prune_runs
from .fixtures import settings_key
from .floors import NOT_REACHABLE_HERE
from .markers import NOT_MEASURABLE_NO_GPU, format_bytes, verdict
from .recorder import format_header_fields

__all__ = [
    "INLINE_BYTES_KEY",
    "LINK_KEY",
    "REPORT_ATTR",
    "RUN_ID_WORKERINPUT_KEY",
    "VideoSessionReport",
    "inline_refusal",
    "relative_link",
]

log = logging.getLogger(__name__)

#: Name of the report attribute carrying the plugin's per-test data (set in the worker).
REPORT_ATTR = "pytest_video"
#: Private keys of an inline video extra, read and removed by the controller before pytest-html sees it.
INLINE_BYTES_KEY = "pytest_video_inline_bytes"
LINK_KEY = "pytest_video_link"
#: Key of ``workerinput`` (pytest-xdist) carrying the controller's run id to the workers.
RUN_ID_WORKERINPUT_KEY = "pytest_video_run_id"


def relative_link(target: Path, report_path: Path) -> str:
    """Path of ``target`` relative to the report's folder, always starting with ``./`` or ``../``.

    The prefix also keeps pytest-html from mistaking the path for base64 data.
    """
    relative = Path(os.path.relpath(Path(target).resolve(), Path(report_path).resolve().parent)).as_posix()
    return relative if relative.startswith("../") else f"./{relative}"


def inline_refusal(nodeid: str, size: int, total: int, cap: int, link: str) -> str:
    """The message refusing ``--video-embed=inline`` for one video."""
    return (
        f"--video-embed=inline refused for {nodeid}: its video ({size / 1e6:.1f} MB) would bring this "
        f"report's inline videos to {total / 1e6:.1f} MB, above the cap of {cap / 1e6:g} MB "
        f"(--video-embed-max-mb / ini video_embed_max_mb); linked instead: {link}. Huge self-contained "
        "reports crash browsers: use --video-embed=link, or raise the cap if you must."
    )


def _cell(text: str, css: str) -> str:
    return f'<td class="col-{css}">{html.escape(text)}</td>'


def _lines_cell(lines: list[str], css: str) -> str:
    return f'<td class="col-{css}">{"<br>".join(html.escape(line) for line in lines)}</td>'


class VideoSessionReport:
    """Controller-side reporting of ``pytest_video_plugin`` (see the module docstring)."""

    NAME = "pytest_video_plugin_report"
    COLUMNS = (
        ("video_fps", "FPS"),
        ("video_vram", "VRAM"),
        ("video_rss", "RSS"),
        ("video_verdict", "Verdict"),
    )

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = config.stash[settings_key]
        html_path = config.getoption("htmlpath", None)
        self.html_path = (
            None if not html_path else Path.cwd() / Path(os.path.expandvars(html_path)).expanduser()
        )
        self.inline_total = 0
        self.refusals: list[str] = []
        self.threshold_reports: list[tuple[str, str, list[str]]] = []  # nodeid, verdict, threshold lines
        self.gates: dict[str, dict[str, Any]] = {}
        self.written: list[str] = []
        self.pruned: list[str] = []
        self.started_utc = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    # -- run folders ----------------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """pytest-xdist: every worker writes into this session's run folder."""
        node.workerinput[RUN_ID_WORKERINPUT_KEY] = self.settings.run_id

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Prune earlier runs, only when asked with ``--video-prune-keep``."""
        folders = self.settings.folders
        if self.settings.prune_keep is not None:
            self.pruned = prune_runs(
                folders.video_dir, folders.metrics_dir, self.settings.prune_keep, current=folders.run_id
            )
            log.info(
                "--video-prune-keep=%d deleted %d earlier run(s)", self.settings.prune_keep, len(self.pruned)
            )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the run's index, when the run wrote files."""
        if not self.written:
            return
        folders = self.settings.folders
        index = {
            "run_id": folders.run_id,
            "started_utc": self.started_utc,
            "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "exit_status": int(exitstatus),
            "files": sorted(set(self.written)),
        }
        try:
            atomic_write_json(folders.run_metrics_dir / RUN_INDEX_NAME, index, fsync=True)
        except OSError as exc:
            log.warning("cannot write the video run index in %s: %s", folders.run_metrics_dir, exc)

    # -- per-test reports -----------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Before pytest-html and the terminal see a report: cap inline videos, collect the gate rows."""
        data = getattr(report, REPORT_ATTR, None)
        if report.when == "call":
            self._cap_inline_videos(report, data)
        if data is None:
            return
        if report.when == "call":
            self.written += [p for p in (data.get("video"), data.get("metrics_json")) if p]
            lines = [t["text"] for t in data.get("thresholds", [])]
            lines += [c["text"] for c in data.get("floor_checks", [])]
            if lines or data.get("embed_refused"):
                fields = format_header_fields(data.get("header") or {})
                lines += [f"header: {fields}"] if fields and lines else []
                self.threshold_reports.append((report.nodeid, _verdict_of(report), lines))
        if data.get("phase"):
            self._update_gate(report, data)

    def _cap_inline_videos(self, report: pytest.TestReport, data: dict[str, Any] | None) -> None:
        cap = self.settings.embed_max_bytes
        for extra in getattr(report, "extras", []):
            if not isinstance(extra, dict) or INLINE_BYTES_KEY not in extra:
                continue
            size, link = int(extra.pop(INLINE_BYTES_KEY)), str(extra.pop(LINK_KEY))
            if self.inline_total + size <= cap:
                self.inline_total += size
                continue
            message = inline_refusal(report.nodeid, size, self.inline_total + size, cap, link)
            extra["content"] = link
            report.sections.append(("pytest_video_plugin", message))
            if data is not None:
                data["embed_refused"] = message
            log.warning("%s", message)
        if data is not None and data.get("embed_refused"):
            self.refusals.append(data["embed_refused"])

    def _update_gate(self, report: pytest.TestReport, data: dict[str, Any]) -> None:
        row = self.gates.setdefault(
            report.nodeid, {"phase": data["phase"], "verdict": "not run", "data": None}
        )
        if report.when == "setup" and report.failed:
            row["verdict"] = "ERROR (setup)"
        elif report.when == "setup" and report.skipped:
            row["verdict"] = "SKIP"
        elif report.when == "call":
            row["verdict"] = _verdict_of(report)
            row["data"] = data if "thresholds" in data else None
        elif report.when == "teardown" and report.failed:
            row["verdict"] += " + ERROR (teardown)"

    # -- pytest-html ----------------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        """FPS / VRAM / RSS / Verdict columns, before pytest-html's Links column."""
        at = next((i for i, cell in enumerate(cells) if ">Links<" in str(cell)), len(cells))
        cells[at:at] = [f'<th class="{css}">{title}</th>' for css, title in self.COLUMNS]

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        """Per-test FPS and floor checks, peak VRAM ("not measurable here (no GPU)" without one),
        peak RSS, verdict ("NOT REACHABLE HERE (...)" for a floor above the same-run ceiling)."""
        at = next((i for i, cell in enumerate(cells) if "col-links" in str(cell)), len(cells))
        data = getattr(report, REPORT_ATTR, None)
        if report.when != "call" or not data or "thresholds" not in data:
            word = f"ERROR ({report.when})" if report.when != "call" and report.failed else ""
            cells[at:at] = [_cell("", css) for css, _ in self.COLUMNS[:-1]] + [_cell(word, "video_verdict")]
            return
        fps = data.get("fps")
        fps_text = "" if fps is None else (f"{fps:,.0f} steps/s" if fps >= 100 else f"{fps:.1f} steps/s")
        fps_lines = ([fps_text] if fps_text else []) + [c["short"] for c in data.get("floor_checks", [])]
        vram = data.get("vram_peak_bytes")
        vram_text = NOT_MEASURABLE_NO_GPU if vram is None else format_bytes(vram)
        rss = data.get("rss_peak_bytes")
        cells[at:at] = [
            _lines_cell(fps_lines, "video_fps"),
            _cell(vram_text, "video_vram"),
            _cell("" if rss is None else format_bytes(rss), "video_rss"),
            _cell(_verdict_of(report), "video_verdict"),
        ]

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str]) -> None:
        """A "Phase gates" table at the top: verdict, headline figure vs threshold, video thumbnail."""
        if self.gates:
            prefix.append(self._gates_html())

    def _gates_html(self) -> str:
        rows = []
        for nodeid, row in sorted(self.gates.items(), key=lambda kv: (kv[1]["phase"], kv[0])):
            data = row["data"] or {}
            ok = row["verdict"].startswith("PASS")
            amber = row["verdict"] == "SKIP" or row["verdict"].startswith(NOT_REACHABLE_HERE.upper())
            colour = "#2e7d32" if ok else ("#b26a00" if amber else "#c62828")
            rows.append(
                "<tr>"
                f"<td>{html.escape(row['phase'])}</td>"
                f"<td>{html.escape(nodeid)}</td>"
                f'<td style="color:{colour};font-weight:bold">{html.escape(row["verdict"])}</td>'
                f"<td>{self._headline(data)}</td>"
                f"<td>{self._video_cell(data)}</td>"
                f"<td>{html.escape(self._header_fields(data))}</td>"
                "</tr>"
            )
        return (
            '<div class="pytest-video-gates"><h3>Phase gates</h3>'
            '<table style="border-collapse:collapse" cellpadding="4" border="1">'
            "<tr><th>Gate</th><th>Test</th><th>Verdict</th><th>Figure vs threshold</th><th>Video</th>"
            "<th>Header</th></tr>" + "".join(rows) + "</table></div>"
        )

    @staticmethod
    def _header_fields(data: dict[str, Any]) -> str:
        """The fields the test named with ``set_header``, in order ("-" when it named none)."""
        return format_header_fields(data.get("header") or {}) or "-"

    @staticmethod
    def _headline(data: dict[str, Any]) -> str:
        shorts = [f"{t['kind']}: {t['short']}" for t in data.get("thresholds", []) if t.get("short")]
        shorts += [c["short"] for c in data.get("floor_checks", [])]
        if shorts:
            return "<br>".join(html.escape(s) for s in shorts)
        fps = data.get("fps")
        if fps is not None:
            return html.escape(f"FPS {fps:,.0f} steps/s (no threshold)")
        return "-"

    def _video_cell(self, data: dict[str, Any]) -> str:
        video = data.get("video")
        if not video:
            if data.get("video_deleted"):
                return html.escape(f"no video ({data['video_deleted']})")
            return "no video" + (" (mode off)" if data.get("mode") == "off" else "")
        link = relative_link(Path(video), self.html_path) if self.html_path else Path(video).as_uri()
        thumb = data.get("thumbnail_png")
        label = html.escape(Path(video).name)
        if thumb:
            body = f'<img src="data:image/png;base64,{thumb}" width="240" alt="{label}"><br>{label}'
        else:
            body = label
        return f'<a href="{html.escape(link)}" target="_blank">{body}</a>'

    # -- terminal -------------------------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Threshold and floor-check verdicts (measured vs required, "not measurable here", "not
        reachable here" with floor and ceiling) with the test's ``set_header`` fields, and refused
        inline embeds."""
        if self.pruned:
            terminalreporter.write_line(
                f"pytest_video_plugin: --video-prune-keep={self.settings.prune_keep} deleted "
                f"{len(self.pruned)} earlier run folder(s) under {self.settings.video_dir / 'runs'}: "
                f"{', '.join(self.pruned)}"
            )
        if not self.threshold_reports and not self.refusals:
            return
        terminalreporter.write_sep("=", "video thresholds (pytest_video_plugin)")
        for nodeid, word, lines in self.threshold_reports:
            terminalreporter.write_line(f"{nodeid}: {word}")
            for line in lines:
                terminalreporter.write_line(f"    {line}")
        for message in self.refusals:
            terminalreporter.write_line(message)


def _verdict_of(report: pytest.TestReport) -> str:
    data = getattr(report, REPORT_ATTR, None) or {}
    return verdict(report.outcome, data.get("thresholds", []), data.get("floor_checks", []))
