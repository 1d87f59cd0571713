"""Import boundaries: the drawing, encoding and telemetry modules are a library (no pytest), videokit
knows neither the plugin nor flyby, flyby's own code does not import the plugin, and the plugin and
videokit know nothing of the host project (no flyby, drone, PX4 or MuJoCo in their sources)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Top-level package names that ``path`` imports (absolute ``import x`` / ``from x import y``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def importers(package: str, of: str) -> list[str]:
    """Source files under ``ROOT/package`` that import the top-level package ``of``."""
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {ROOT / package}"
    return [str(p.relative_to(ROOT)) for p in files if of in imported_modules(p)]


def test_library_modules_do_not_import_pytest() -> None:
    code = (
        "import sys\n"
        "import videokit, videokit.overlay, videokit.encode, videokit.errors\n"
        "import pytest_video_plugin, pytest_video_plugin.metrics, pytest_video_plugin.recorder\n"
        "import pytest_video_plugin.floors\n"
        "heavy = sorted(m for m in ('pytest', '_pytest', 'cv2', 'av', 'pynvml') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    # pytest never; OpenCV, PyAV and NVML only once a frame is drawn, encoded or sampled
    assert out.stdout.strip() == ""


def test_the_plugin_re_exports_the_videokit_names_it_always_had() -> None:
    import pytest_video_plugin
    import videokit

    for name in ("Box", "Text", "H264Writer", "compose_grid", "side_by_side"):
        assert getattr(pytest_video_plugin, name) is getattr(videokit, name), name
    # one error hierarchy: the plugin's base class catches the encoder's errors, as before the move
    assert issubclass(pytest_video_plugin.VideoEncodeError, pytest_video_plugin.VideoPluginError)
    assert issubclass(pytest_video_plugin.DependencyNotInstalled, pytest_video_plugin.VideoPluginError)


def test_flyby_source_does_not_import_the_plugin() -> None:
    assert importers("flyby", "pytest_video_plugin") == []


@pytest.mark.parametrize("package", ["videokit"])
@pytest.mark.parametrize("forbidden", ["pytest", "_pytest", "pytest_video_plugin", "flyby"])
def test_videokit_imports_neither_pytest_nor_the_plugin_nor_flyby(package: str, forbidden: str) -> None:
    assert importers(package, forbidden) == []


def test_the_import_scan_sees_imports_it_must_report(tmp_path: Path) -> None:
    """The checks above pass on an empty answer: prove the scanner finds each form of import."""
    (tmp_path / "a.py").write_text(
        "import os\nimport pytest_video_plugin.encode as e\n"
        "def f():\n    from flyby.cli import main\n    from . import sibling\n",
        encoding="utf-8",
    )
    assert imported_modules(tmp_path / "a.py") == {"os", "pytest_video_plugin", "flyby"}


HOST_WORDS = re.compile(r"flyby|drone|px4|mujoco", re.IGNORECASE)


def test_plugin_and_videokit_do_not_name_the_host_project() -> None:
    """Header fields and install hints come from the host project; the generic code names none."""
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for folder in ("pytest_video_plugin", "videokit")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".md")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if HOST_WORDS.search(line)
    ]
    assert hits == []
