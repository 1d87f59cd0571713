"""Unit tests of pytest_video_plugin.metrics: step rate and memory sampling."""

from __future__ import annotations

import pytest

from pytest_video_plugin.metrics import NO_GPU, GpuMemoryProbe, MemorySampler, StepRate, format_gb


class FakeClock:
    """Manually advanced monotonic clock, seconds."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_step_rate_times_steps_after_the_first_call() -> None:
    clock = FakeClock()
    rate = StepRate(clock)
    assert rate.fps is None
    rate.count(16)  # starts the clock; these steps have no known start time
    assert rate.fps is None and rate.steps == 16
    clock.t += 2.0
    rate.count(16)
    clock.t += 2.0
    rate.count(16)
    assert rate.steps == 48
    assert rate.timed_steps == 32
    assert rate.elapsed_s == pytest.approx(4.0)
    assert rate.fps == pytest.approx(32 / 4.0)


def test_step_rate_zero_elapsed_gives_none() -> None:
    rate = StepRate(FakeClock())
    rate.count(0)
    rate.count(10)
    assert rate.fps is None


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_step_rate_rejects_non_counts(bad: object) -> None:
    with pytest.raises(ValueError, match="int >= 0"):
        StepRate().count(bad)  # type: ignore[arg-type]


def test_step_rate_counts_steps_timed_elsewhere() -> None:
    clock = FakeClock()
    rate = StepRate(clock)
    rate.count_timed(2_000_000, 250.0)  # e.g. a training stage's env steps and wall time
    assert rate.fps == pytest.approx(8_000.0) and rate.steps == 2_000_000 and rate.first_t is None
    rate.count(0)
    clock.t += 10.0
    rate.count(80_000)  # a timed loop after it joins the same rate
    assert rate.elapsed_s == pytest.approx(260.0)
    assert rate.fps == pytest.approx(2_080_000 / 260.0)


@pytest.mark.parametrize(
    ("steps", "seconds", "match"),
    [(-1, 1.0, "int >= 0"), (10, 0.0, "seconds"), (10, float("nan"), "seconds"), (10, "5", "seconds")],
)
def test_step_rate_count_timed_rejects_bad_input(steps: object, seconds: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StepRate().count_timed(steps, seconds)  # type: ignore[arg-type]


def test_recorder_count_steps_with_seconds_sets_the_fps(tmp_path) -> None:
    from pytest_video_plugin import VideoRecorder

    rec = VideoRecorder(tmp_path / "v.mp4")
    rec.count_steps(7_500, seconds=1.0)
    assert rec.fps == pytest.approx(7_500.0)
    with pytest.raises(ValueError, match="seconds"):
        rec.count_steps(1, seconds=-1.0)
    rec.finalize()


def test_memory_sampler_records_rss_and_reports_gpu_state() -> None:
    with MemorySampler(interval_s=0.01) as sampler:
        assert sampler.samples >= 1  # first sample is synchronous
        assert sampler.latest is not None
    assert sampler.rss_peak_bytes > 10_000_000  # a Python process with numpy is well above 10 MB
    assert sampler.samples >= 2  # plus the final sample at stop
    if sampler.gpu_available:
        assert sampler.vram_peak_bytes is not None and sampler.vram_peak_bytes > 0
        assert sampler.memory_label().startswith("VRAM ")
    else:
        assert sampler.vram_peak_bytes is None
        assert sampler.gpu_description.startswith(NO_GPU)
        assert sampler.memory_label().startswith("RSS ") and sampler.memory_label().endswith(" GB")
    sampler.stop()  # idempotent


def test_gpu_probe_without_nvml_reads_none() -> None:
    probe = GpuMemoryProbe()
    try:
        if not probe.available:
            assert probe.read() is None
            assert probe.description.startswith(NO_GPU)
        else:
            assert probe.read() is not None
    finally:
        probe.close()


def test_format_gb() -> None:
    assert format_gb(1_234_567_890) == "1.2 GB"
    assert format_gb(None) == "n/a"
