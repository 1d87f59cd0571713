from __future__ import annotations

import json

import pytest

from flyby.cli import main


def test_bench_prints_and_saves_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--steps", "30", "--drones", "1,4", "--render-frames", "2", "--repeats", "2",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "30 steps, median of 2 runs" in text
    for needle in ("DirectISR-v0", "MultiDroneISR-v0", "drone-steps/s", "16 drone cameras at 80x80",
                   "640x480 overview", "H.264 encode 640x480", "PX4ISR-v0 full fidelity", "render every step, full"):
        assert needle in text, needle
    data = json.loads(out.read_text())
    assert [r["num_drones"] for r in data["multi_drone"]] == [1, 4]
    assert data["direct"]["drone_steps_per_s"] > 0
    assert data["render"]["grid_16x80x80_ms"] > 0 and data["render"]["encode_640x480_fps"] > 0
    assert [r["case"][:6] for r in data["full_fidelity"]] == ["render"] * 4


def test_info_names_the_backend(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "backend      : mujoco" in text and "GPU" in text


def test_bad_arguments(capsys):
    assert main(["bench", "--steps", "0"]) == 2
    assert "--steps must be >= 1, got 0" in capsys.readouterr().err
    assert main(["bench", "--repeats", "0"]) == 2
    assert "--repeats must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit):
        main(["nope"])
    assert main(["info", "--backend", "unreal"]) == 2
    assert "'unreal'" in capsys.readouterr().err
