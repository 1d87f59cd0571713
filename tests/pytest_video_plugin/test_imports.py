"""The drawing, encoding and telemetry modules are a library: importing them must not import pytest."""

from __future__ import annotations

import subprocess
import sys


def test_library_modules_do_not_import_pytest() -> None:
    code = (
        "import sys\n"
        "import pytest_video_plugin, pytest_video_plugin.overlay, pytest_video_plugin.encode\n"
        "import pytest_video_plugin.metrics, pytest_video_plugin.recorder, pytest_video_plugin.floors\n"
        "heavy = sorted(m for m in ('pytest', '_pytest', 'cv2', 'av', 'pynvml') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    # pytest never; OpenCV, PyAV and NVML only once a frame is drawn, encoded or sampled
    assert out.stdout.strip() == ""
