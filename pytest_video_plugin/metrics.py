"""Throughput and memory telemetry: a step-rate counter and a background memory sampler.

* :class:`StepRate` turns "N more steps happened" calls into steps per second.
* :class:`MemorySampler` samples host RSS (psutil) and GPU memory (NVML, via nvidia-ml-py) on a
  daemon thread every ``interval_s`` seconds and keeps the peaks.

This module does not import pytest: it is usable as a library.
"""

from __future__ import annotations

import logging
import operator
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import import_optional, install_hint

__all__ = ["GpuMemoryProbe", "MemorySample", "MemorySampler", "StepRate", "format_gb"]

log = logging.getLogger(__name__)

#: Label used wherever a GPU memory figure would go when NVML sees no GPU.
NO_GPU = "no GPU"


def format_gb(num_bytes: int | None) -> str:
    """``1_234_567_890 -> "1.2 GB"`` (decimal gigabytes, one decimal); None -> ``"n/a"``."""
    return "n/a" if num_bytes is None else f"{num_bytes / 1e9:.1f} GB"


def _step_count(steps: object) -> int:
    """``steps`` as an int >= 0, or ValueError naming it (bools are not counts)."""
    try:
        if isinstance(steps, bool):
            raise TypeError
        count = operator.index(steps)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}") from None
    if count < 0:
        raise ValueError(f"steps must be an int >= 0, got {count}")
    return count


class StepRate:
    """Steps-per-second counter fed by "this many steps since the last call" increments.

    The first :meth:`count` call starts the clock. Its steps are added to :attr:`steps` but not to
    the rate, because when they began is unknown; every later call's steps are divided by the time
    from the first call to the latest one. So ``count(0)`` before a loop and ``count(n)`` after each
    batch measure the loop alone, and calling ``count(k)`` after every batch of k steps gives
    ``(calls - 1) * k / elapsed`` - the true rate, not one inflated by the first batch.

    Args:
        clock: monotonic time source in seconds (injectable for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.steps = 0  #: all steps counted, including the first call's
        self.timed_steps = 0  #: steps counted after the first call (the rate's numerator)
        self.first_t: float | None = None  #: clock time of the first call, seconds
        self.last_t: float | None = None  #: clock time of the latest call, seconds
        self.timed_elsewhere_s = 0.0  #: seconds of steps timed outside this counter (:meth:`count_timed`)

    def count(self, steps: int) -> None:
        """Record ``steps`` (int >= 0) more steps, completed now.

        Raises:
            ValueError: ``steps`` is negative or not an integer.
        """
        steps = _step_count(steps)
        now = self._clock()
        if self.first_t is None:
            self.first_t = now
        else:
            self.timed_steps += steps
        self.last_t = now
        self.steps += steps

    def count_timed(self, steps: int, seconds: float) -> None:
        """Record ``steps`` (int >= 0) that took ``seconds`` (> 0, finite), timed by the caller.

        For a run the test shows but did not time step by step (e.g. a training stage whose wall
        time a pipeline recorded): the steps and the seconds both join the rate. The clock of
        :meth:`count` is not started.

        Raises:
            ValueError: ``steps`` is not an int >= 0, or ``seconds`` is not a finite number > 0.
        """
        steps = _step_count(steps)
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not (0 < seconds < float("inf"))
        ):
            raise ValueError(f"seconds must be a finite number > 0, got {seconds!r}")
        self.steps += steps
        self.timed_steps += steps
        self.timed_elsewhere_s += float(seconds)

    @property
    def elapsed_s(self) -> float | None:
        """Seconds from the first to the latest call plus those of :meth:`count_timed`, or None before any."""
        if self.first_t is None or self.last_t is None:
            return self.timed_elsewhere_s or None
        return self.last_t - self.first_t + self.timed_elsewhere_s

    @property
    def fps(self) -> float | None:
        """Steps per second, or None until two calls with time between them."""
        elapsed = self.elapsed_s
        if not elapsed or elapsed <= 0:
            return None
        return self.timed_steps / elapsed


@dataclass(frozen=True)
class MemorySample:
    """One memory reading.

    Attributes:
        rss_bytes: resident set size of this process, bytes.
        vram_bytes: memory in use on this process's GPU, bytes; None without a GPU.
    """

    rss_bytes: int
    vram_bytes: int | None


def _selected_gpu_index_or_uuid() -> int | str:
    """The GPU this process uses: first entry of ``CUDA_VISIBLE_DEVICES`` (index or UUID), else 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if visible.isdigit():
        return int(visible)
    if visible.startswith(("GPU-", "MIG-")):
        return visible
    return 0


class GpuMemoryProbe:
    """Reads the memory in use on this process's GPU through NVML (nvidia-ml-py).

    The GPU is the first one in ``CUDA_VISIBLE_DEVICES`` (index or UUID), else device 0. The figure
    is the whole device's used memory (``nvmlDeviceGetMemoryInfo(...).used``): per-process figures
    are often hidden inside containers, and a device total can only over-state this process's use,
    which is the safe side for a "VRAM below X" check.

    Without the NVML library, without a GPU, or without nvidia-ml-py installed, :attr:`available`
    is False, :attr:`description` says why, and :meth:`read` returns None.
    """

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handle: Any = None
        self.description = NO_GPU
        try:
            import pynvml  # nvidia-ml-py; optional telemetry
        except ImportError:
            hint = install_hint("pynvml")
            self.description = f"{NO_GPU} (nvidia-ml-py not installed: {hint})"
            log.info("GPU memory not sampled: nvidia-ml-py is not installed (%s)", hint)
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            log.debug("NVML unavailable (%s); reporting %r", exc, NO_GPU)
            return
        try:
            target = _selected_gpu_index_or_uuid()
            if isinstance(target, str):
                handle = pynvml.nvmlDeviceGetHandleByUUID(target)
            else:
                handle = pynvml.nvmlDeviceGetHandleByIndex(target)
            name = pynvml.nvmlDeviceGetName(handle)
        except pynvml.NVMLError as exc:
            log.warning("NVML is loaded but no GPU could be opened (%s); reporting %r", exc, NO_GPU)
            pynvml.nvmlShutdown()
            return
        self._nvml, self._handle = pynvml, handle
        name = name.decode() if isinstance(name, bytes) else str(name)
        self.description = f"{name} (device {target})"

    @property
    def available(self) -> bool:
        """True when NVML opened a GPU."""
        return self._handle is not None

    def read(self) -> int | None:
        """Memory in use on the GPU, bytes; None without a GPU or when NVML fails."""
        if self._handle is None:
            return None
        try:
            return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
        except self._nvml.NVMLError as exc:
            log.warning("NVML memory query failed: %s", exc)
            return None

    def close(self) -> None:
        """Release NVML. Idempotent."""
        if self._nvml is not None:
            nvml, self._nvml, self._handle = self._nvml, None, None
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError:
                log.debug("nvmlShutdown failed", exc_info=True)


class MemorySampler:
    """Samples host RSS and GPU memory on a daemon thread and keeps the latest and peak values.

    :meth:`start` takes one sample synchronously (so even a very short run has figures) and starts
    the thread; :meth:`stop` ends the thread, takes a last sample and releases NVML. Both are
    idempotent; the object is also a context manager.

    Args:
        interval_s: seconds between samples.

    Raises:
        DependencyNotInstalled: psutil is missing (from :meth:`start`).
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0 seconds, got {interval_s!r}")
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: Any = None
        self._gpu: GpuMemoryProbe | None = None
        self.gpu_description = NO_GPU  #: GPU name and index, or why there is none
        self.gpu_available = False  #: True when NVML opened a GPU
        self.latest: MemorySample | None = None  #: most recent sample
        self.rss_peak_bytes = 0  #: highest RSS seen, bytes
        self.vram_peak_bytes: int | None = None  #: highest GPU memory in use seen, bytes (None: no GPU)
        self.vram_start_bytes: int | None = None  #: GPU memory in use at start, bytes (None: no GPU)
        self.samples = 0  #: number of samples taken

    def start(self) -> None:
        """Open psutil/NVML, take the first sample and start the sampling thread."""
        if self._thread is not None or self._stop.is_set():
            return
        psutil = import_optional("psutil", "sampling process memory")
        self._process = psutil.Process()
        self._gpu = GpuMemoryProbe()
        self.gpu_description, self.gpu_available = self._gpu.description, self._gpu.available
        self.sample()
        self.vram_start_bytes = self.vram_peak_bytes
        self._thread = threading.Thread(target=self._run, name="pytest-video-memory-sampler", daemon=True)
        self._thread.start()

    def sample(self) -> MemorySample:
        """Take one sample now, update latest/peaks and return it."""
        rss = int(self._process.memory_info().rss)
        vram = self._gpu.read() if self._gpu is not None else None
        sample = MemorySample(rss_bytes=rss, vram_bytes=vram)
        with self._lock:
            self.latest = sample
            self.samples += 1
            self.rss_peak_bytes = max(self.rss_peak_bytes, rss)
            if vram is not None:
                self.vram_peak_bytes = (
                    vram if self.vram_peak_bytes is None else max(self.vram_peak_bytes, vram)
                )
        return sample

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception:  # broad on purpose: a telemetry thread must not die silently or kill the test
                log.exception("memory sampling failed; stopping the sampler")
                return

    def stop(self) -> None:
        """Stop the thread, take a final sample and release NVML. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.sample()
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None

    def memory_label(self) -> str:
        """``"VRAM x.x GB"`` when a GPU is sampled, else ``"RSS x.x GB"`` (latest values)."""
        latest = self.latest
        if latest is None:
            return "RSS n/a"
        if latest.vram_bytes is not None:
            return f"VRAM {format_gb(latest.vram_bytes)}"
        return f"RSS {format_gb(latest.rss_bytes)}"

    def __enter__(self) -> MemorySampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
