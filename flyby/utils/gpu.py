"""GPU presence and memory through NVML (nvidia-ml-py), imported lazily.

Without the package or without an NVIDIA driver every function answers
"no GPU" instead of raising: the caller reports host RSS instead.
"""

from __future__ import annotations


def gpu_summary() -> str:
    """'NVIDIA H200 (139.8 GiB)', or 'no GPU (<reason>)'."""
    try:
        import pynvml
    except ImportError:
        return "no GPU (nvidia-ml-py not installed)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"no GPU ({exc})"
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            return "no GPU (NVML sees 0 devices)"
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else name
        total = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30
        return f"{name} ({total:.1f} GiB)" + (f" + {count - 1} more" if count > 1 else "")
    finally:
        pynvml.nvmlShutdown()
