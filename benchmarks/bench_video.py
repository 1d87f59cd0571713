"""Figures of the video plugin: encode speed with full overlays, recording overhead, memory.

1. encode: frames/s through ``VideoRecorder.add_frame`` (overlays composed, then H.264 encoded by
   libx264 through PyAV) for 640x480 and 1280x720 caller frames with full overlays: prediction
   boxes with confidence, dashed ground-truth boxes (so the legend is drawn), free texts, a
   six-key metrics sidebar, header and footer. Includes finishing the MP4.
2. overhead: a synthetic 2,000-frame test: each frame is one batched step of ``--agents`` agents
   (numpy, calibrated to about ``--work-ms`` of compute) and a 320x240 render drawn with numpy,
   handed to ``add_frame`` with its boxes. Run without a recorder, then recording every frame
   (``--video-every-n 1``) and every 4th (``--video-every-n 4``); the overhead is the extra wall
   time as a percentage of the recorded run's wall time. The recorder's cost per handed frame is
   printed too, so the percentage for another loop can be worked out from its own frame time.
3. rss: the process's resident memory while recording 10,000 frames (320x240, full overlays),
   printed at 1k, 5k and 10k frames: frames are streamed to the encoder, so it must stay flat.
4. kill (not in the default set: ``--only kill``): a subprocess records 320x240 frames with full
   overlays through ``VideoRecorder`` and is killed with SIGKILL at a random instant (0.5-3 s after
   its first frame), ``--kill-tries`` times; prints the frames it had handed to ``add_frame``, the
   frames ffprobe decodes from what is left, and the loss in seconds of video.

    python benchmarks/bench_video.py
    python benchmarks/bench_video.py --only encode --encode-frames 300
    python benchmarks/bench_video.py --work-ms 10 --json output/metrics/bench_video.json
    python benchmarks/bench_video.py --only kill --kill-tries 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _overlays(width: int, height: int, i: int) -> dict[str, Any]:
    from pytest_video_plugin import Box, Text

    boxes = []
    for k in range(6):
        x = (37 * k + 5 * i) % max(1, width - 60)
        y = (53 * k + 3 * i) % max(1, height - 50)
        boxes.append(
            Box(
                x,
                y,
                x + 48,
                y + 40,
                label="vehicle" if k % 2 else "person",
                color=(255, 140, 0) if k % 2 else (255, 60, 200),
                confidence=0.5 + 0.08 * k,
            )
        )
        boxes.append(Box(x + 2, y + 3, x + 50, y + 42, label="gt", color=(0, 255, 0), style="dashed"))
    texts = [Text(f"t={i / 15:.2f} s", x=5, y=15), Text(f"drone #{i % 16}", x=5, y=height - 8)]
    metrics = {
        "reward": 0.01 * i,
        "step": i * 4,
        "detections": 6,
        "coverage": f"{i % 100} %",
        "sim time s": round(i * 0.2, 1),
        "episode": i // 200,
    }
    return {
        "boxes": boxes,
        "texts": texts,
        "metrics": metrics,
        "footer": "bench_video",
        "rendered": i % 4 == 0,
    }


def _frames(width: int, height: int, count: int = 8) -> list[np.ndarray]:
    """A few distinct frames that look like renders: gradients, a moving block, a checkered ground
    and +-3 levels of sensor-like noise (a constant frame would flatter the encoder, full-range
    noise would make it look far slower than on real renders)."""
    rng = np.random.default_rng(0)
    base = np.zeros((height, width, 3), np.uint8)
    base[..., 0] = np.linspace(30, 200, width, dtype=np.uint8)[None, :]
    base[..., 1] = np.linspace(40, 160, height, dtype=np.uint8)[:, None]
    yy, xx = np.mgrid[0:height, 0:width]
    ground = (yy > height // 2) & (((xx // 16) + (yy // 16)) % 2 == 0)
    base[ground] = base[ground] // 2
    out = []
    for k in range(count):
        frame = base.copy()
        noise = rng.integers(0, 7, (height, width, 1), dtype=np.uint8)
        frame = np.clip(frame.astype(np.int16) + noise - 3, 0, 255).astype(np.uint8)
        x = (k * width) // count
        frame[height // 3 : height // 3 + 60, x : x + 80] = (240, 200, 40)
        out.append(frame)
    return out


def bench_encode(width: int, height: int, frames: int, folder: Path) -> dict[str, float]:
    from pytest_video_plugin import VideoRecorder

    images = _frames(width, height)
    annotations = [_overlays(width, height, i) for i in range(frames)]
    with VideoRecorder(
        folder / f"encode_{width}x{height}.mp4", fps=15, test_name="bench_video::encode"
    ) as rec:
        rec.set_header(backend="synthetic frames", flight_stack="none")
        rec.add_frame(images[0], **annotations[0])  # opens the encoder: not timed
        t0 = time.perf_counter()
        for i in range(1, frames):
            rec.add_frame(images[i % len(images)], **annotations[i])
        rec.finalize()
        elapsed = time.perf_counter() - t0
        out_size = rec.summary()["video_size"]
    return {
        "frames_per_s": (frames - 1) / elapsed,
        "ms_per_frame": 1e3 * elapsed / (frames - 1),
        "caller": f"{width}x{height}",
        "video": f"{out_size[0]}x{out_size[1]}",
    }


class SyntheticTest:
    """A batched agent step (numpy) plus a 320x240 numpy render per frame."""

    def __init__(self, agents: int, inner: int = 1, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.pos = rng.uniform(0, 1, (agents, 2))
        self.vel = rng.normal(0, 0.01, (agents, 2))
        self.background = _frames(320, 240, 1)[0]
        self.inner = inner

    def _dynamics(self) -> None:
        for _ in range(self.inner):
            self.vel += 0.001 * np.sin(self.pos * 6.283) - 0.01 * self.vel
            self.pos = (self.pos + self.vel) % 1.0
            _ = np.linalg.norm(self.pos[:, None, :64] - self.pos[None, :64, :], axis=-1).min()

    @classmethod
    def calibrate(cls, agents: int, work_ms: float) -> int:
        """Inner iterations of the dynamics that take about ``work_ms`` on this machine."""
        probe = cls(agents)
        probe._dynamics()
        t0 = time.perf_counter()
        for _ in range(50):
            probe._dynamics()
        per_iter = (time.perf_counter() - t0) / 50
        return max(1, round(work_ms / 1e3 / per_iter))

    def frame(self) -> tuple[np.ndarray, list[Any]]:
        from pytest_video_plugin import Box

        self._dynamics()
        frame = self.background.copy()
        boxes = []
        for x, y in (self.pos[:8] * (300, 220)).astype(int):
            frame[y : y + 12, x : x + 12] = (255, 255, 0)
            boxes.append(Box(x - 2, y - 2, x + 14, y + 14, label="drone", confidence=0.9))
            boxes.append(Box(x - 1, y - 1, x + 13, y + 13, style="dashed"))
        return frame, boxes


def bench_overhead(frames: int, agents: int, work_ms: float, repeats: int, folder: Path) -> dict[str, Any]:
    """Wall time of the synthetic test without and with recording; the best of ``repeats`` interleaved runs.

    Also the time spent inside the recorder's calls (``count_steps``, ``add_frame``, finishing the
    MP4) as a share of the recorded run: it excludes the encoder's background threads competing
    with the test for the CPU, which the wall-time difference includes.
    """
    from pytest_video_plugin import VideoRecorder

    inner = SyntheticTest.calibrate(agents, work_ms)  # once: every run does the same work

    def run(every_n: int | None) -> tuple[float, float]:
        test = SyntheticTest(agents, inner)
        t0 = time.perf_counter()
        if every_n is None:
            for _ in range(frames):
                test.frame()
            return time.perf_counter() - t0, 0.0
        inside = 0.0
        rec = VideoRecorder(folder / f"overhead_{every_n}.mp4", fps=15, every_n=every_n)
        rec.count_steps(0)
        for i in range(frames):
            frame, boxes = test.frame()
            t1 = time.perf_counter()
            rec.count_steps(agents)
            rec.add_frame(frame, boxes=boxes, metrics={"step": i, "reward": 0.5}, footer="synthetic test")
            inside += time.perf_counter() - t1
        t1 = time.perf_counter()
        rec.finalize()
        now = time.perf_counter()
        return now - t0, inside + now - t1

    run(None)  # warm caches and numpy
    with VideoRecorder(folder / "warmup.mp4") as rec:  # first use imports OpenCV, PyAV, psutil, NVML
        for _ in range(5):
            rec.add_frame(*SyntheticTest(agents, 1).frame()[:1])
    runs: dict[int | None, list[tuple[float, float]]] = {None: [], 1: [], 4: []}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits every case alike
        for key, timings in runs.items():
            timings.append(run(key))
    base = min(wall for wall, _ in runs[None])
    result: dict[str, Any] = {
        "frames": frames,
        "repeats": repeats,
        "baseline_s": base,
        "baseline_ms_per_frame": 1e3 * base / frames,
    }
    for every_n in (1, 4):
        wall, inside = min(runs[every_n])
        result[f"every_n_{every_n}"] = {
            "wall_s": wall,
            "overhead_pct_of_wall": 100 * (wall - base) / wall,
            "inside_recorder_pct_of_wall": 100 * inside / wall,
            "recorder_ms_per_handed_frame": 1e3 * inside / frames,
        }
    return result


def bench_rss(
    frames: int, folder: Path, checkpoints: tuple[int, ...] = (1_000, 5_000, 10_000)
) -> dict[str, Any]:
    import psutil

    from pytest_video_plugin import VideoRecorder

    process = psutil.Process()
    images = _frames(320, 240)
    annotations = [_overlays(320, 240, i) for i in range(64)]
    rss: dict[int, int] = {}
    t0 = time.perf_counter()
    with VideoRecorder(folder / "rss.mp4", fps=15, sample_interval_s=0.5) as rec:
        for i in range(1, frames + 1):
            rec.add_frame(images[i % len(images)], **annotations[i % len(annotations)])
            if i in checkpoints or i == frames:
                rss[i] = process.memory_info().rss
        rec.finalize()
        peak = rec.summary()["rss_peak_bytes"]
    size = (folder / "rss.mp4").stat().st_size
    return {
        "rss_at_frames": rss,
        "sampler_peak_bytes": peak,
        "video_bytes": size,
        "wall_s": time.perf_counter() - t0,
    }


_KILL_CHILD = """
import os, sys
from pathlib import Path
sys.path.insert(0, os.environ["BENCH_VIDEO_DIR"])
from bench_video import _frames, _overlays
from pytest_video_plugin import VideoRecorder

video, progress, fps = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
images = _frames(320, 240)
annotations = [_overlays(320, 240, i) for i in range(64)]
tmp = progress.with_name(progress.name + ".tmp")
rec = VideoRecorder(video, metrics_path=video.with_suffix(".json"), fps=fps)
for i in range(10**6):
    rec.add_frame(images[i % len(images)], **annotations[i % len(annotations)])
    tmp.write_text(str(i + 1))
    os.replace(tmp, progress)
"""


def _decoded_frames(path: Path) -> int:
    """Frames ffprobe decodes from ``path``; 0 when it cannot open it (an MP4 without its index)."""
    cmd = ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
           "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    text = out.stdout.strip().rstrip(",")
    return int(text) if out.returncode == 0 and text.isdigit() else 0


def bench_kill(tries: int, fps: float, folder: Path, seed: int = 0) -> dict[str, Any]:
    """SIGKILL a recording subprocess at a random instant, ``tries`` times; frames handed vs decoded."""
    rng = random.Random(seed)
    env = {**os.environ, "BENCH_VIDEO_DIR": str(Path(__file__).resolve().parent)}
    rows = []
    for k in range(tries):
        video, progress = folder / f"kill_{k}.mp4", folder / f"kill_{k}.progress"
        proc = subprocess.Popen(  # cwd: not the checkout, so PYTHONPATH decides which plugin is measured
            [sys.executable, "-c", _KILL_CHILD, str(video), str(progress), str(fps)], env=env, cwd=folder
        )
        try:
            deadline = time.monotonic() + 120
            while not (progress.is_file() and progress.read_text()):  # the first frame is recorded
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the recording subprocess did not start (exit {proc.returncode})")
                time.sleep(0.005)
            time.sleep(rng.uniform(0.5, 3.0))  # the random instant of the kill (a delay, not a sync)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        handed = int(progress.read_text())
        decoded = _decoded_frames(video) if video.exists() else 0
        rows.append({"handed": handed, "decoded": decoded, "lost_s": (handed - decoded) / fps})
    lost = [r["lost_s"] for r in rows]
    return {
        "tries": rows,
        "fps": fps,
        "lost_s_min": min(lost),
        "lost_s_median": statistics.median(lost),
        "lost_s_max": max(lost),
        "recovered_share": sum(r["decoded"] for r in rows) / max(1, sum(r["handed"] for r in rows)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        choices=("encode", "overhead", "rss", "kill"),
        action="append",
        help="run only these parts (repeatable; default: encode, overhead, rss)",
    )
    parser.add_argument("--encode-frames", type=int, default=200, help="frames per encode size (default 200)")
    parser.add_argument(
        "--overhead-frames", type=int, default=2000, help="frames of the synthetic test (default 2000)"
    )
    parser.add_argument(
        "--agents",
        type=int,
        default=1024,
        help="agents stepped per frame in the synthetic test (default 1024)",
    )
    parser.add_argument(
        "--work-ms",
        type=float,
        default=5.0,
        help="compute per frame of the synthetic test before rendering, ms (default 5)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="interleaved runs of each overhead case; the fastest counts (default 2)",
    )
    parser.add_argument(
        "--rss-frames", type=int, default=10_000, help="frames of the memory run (default 10000)"
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the MP4s in this folder (default: a temp folder)"
    )
    parser.add_argument("--kill-tries", type=int, default=10, help="SIGKILLs of the kill part (default 10)")
    parser.add_argument(
        "--kill-fps", type=float, default=15.0, help="video frame rate of the kill part (default 15)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    parts = args.only or ["encode", "overhead", "rss"]

    import av
    import cv2

    print(
        f"PyAV {av.__version__} (FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} libavcodec), "
        f"OpenCV {cv2.__version__}, numpy {np.__version__}, cv2 threads {cv2.getNumThreads()}"
    )
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_video_") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if "encode" in parts:
            print(
                f"\n1. encode with full overlays ({args.encode_frames} frames each, H.264 superfast crf 23)"
            )
            print(f"   {'caller frame':>12}  {'video frame':>11}  {'frames/s':>9}  {'ms/frame':>8}")
            figures["encode"] = []
            for width, height in ((640, 480), (1280, 720)):
                r = bench_encode(width, height, args.encode_frames, folder)
                figures["encode"].append(r)
                print(
                    f"   {r['caller']:>12}  {r['video']:>11}  "
                    f"{r['frames_per_s']:9.1f}  {r['ms_per_frame']:8.2f}"
                )
        if "overhead" in parts:
            r = bench_overhead(args.overhead_frames, args.agents, args.work_ms, args.repeats, folder)
            figures["overhead"] = r
            print(
                f"\n2. recording overhead, synthetic {r['frames']:,}-frame test "
                f"(320x240 frames, {args.agents} agents, "
                f"~{args.work_ms:g} ms compute per frame; best of {args.repeats})"
            )
            print(
                f"   without recording: {r['baseline_s']:.2f} s ({r['baseline_ms_per_frame']:.2f} ms/frame)"
            )
            for every_n in (1, 4):
                e = r[f"every_n_{every_n}"]
                print(
                    f"   --video-every-n {every_n}: {e['wall_s']:.2f} s, "
                    f"overhead {e['overhead_pct_of_wall']:.1f} % of "
                    f"wall time; inside the recorder {e['inside_recorder_pct_of_wall']:.1f} % "
                    f"({e['recorder_ms_per_handed_frame']:.2f} ms per handed frame)"
                )
        if "rss" in parts:
            r = bench_rss(args.rss_frames, folder)
            figures["rss"] = r
            print(
                f"\n3. resident memory while recording {args.rss_frames:,} frames (320x240, full overlays), "
                f"{r['wall_s']:.1f} s, video {r['video_bytes'] / 1e6:.1f} MB"
            )
            for n, value in r["rss_at_frames"].items():
                print(f"   after {n:>6,} frames: RSS {value / 2**20:7.1f} MiB")
            print(f"   sampler peak over the run: {r['sampler_peak_bytes'] / 2**20:.1f} MiB")
        if "kill" in parts:
            r = bench_kill(args.kill_tries, args.kill_fps, folder)
            figures["kill"] = r
            print(
                f"\n4. SIGKILL at a random instant (0.5-3 s after the first frame), {args.kill_tries} tries, "
                f"320x240 frames with full overlays, {args.kill_fps:g} fps video"
            )
            print(f"   {'try':>3}  {'handed':>6}  {'decoded':>7}  {'lost':>7}")
            for k, row in enumerate(r["tries"], 1):
                print(f"   {k:>3}  {row['handed']:6d}  {row['decoded']:7d}  {row['lost_s']:5.2f} s")
            print(
                f"   lost video: min {r['lost_s_min']:.2f} s, median {r['lost_s_median']:.2f} s, max "
                f"{r['lost_s_max']:.2f} s; {100 * r['recovered_share']:.1f} % of all handed frames decodable"
            )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
