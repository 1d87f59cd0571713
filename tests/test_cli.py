from __future__ import annotations

import json

import pytest

from flyby.cli import main


def test_bench_prints_and_saves_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--steps",
                "30",
                "--drones",
                "1,4",
                "--render-frames",
                "2",
                "--repeats",
                "2",
                "--full-fidelity-stacks",
                "cascade",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "30 steps, median of 2 runs" in text
    for needle in (
        "DirectISR-v0",
        "MultiDroneISR-v0",
        "drone-steps/s",
        "16 drone cameras at 80x80",
        "640x480 overview",
        "H.264 encode 640x480",
        "PX4ISR-v0 full fidelity",
        "render every step, full",
    ):
        assert needle in text, needle
    data = json.loads(out.read_text())
    assert [r["num_drones"] for r in data["multi_drone"]] == [1, 4]
    assert data["direct"]["drone_steps_per_s"] > 0
    assert data["render"]["grid_16x80x80_ms"] > 0 and data["render"]["encode_640x480_fps"] > 0
    assert [r["case"][:6] for r in data["full_fidelity"]] == ["render"] * 4
    assert {r["flight_stack"] for r in data["full_fidelity"]} == {"cascade"}
    assert {r["repeats"] for r in data["full_fidelity"]} == {2}  # medians, as every env figure
    assert "PX4 SITL: not measured (--full-fidelity-stacks cascade)" in text


@pytest.mark.px4
def test_bench_measures_px4_beside_the_cascade(px4_binary, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--steps",
                "250",
                "--drones",
                "1",
                "--repeats",
                "1",
                "--no-render",
                "--full-fidelity-stacks",
                "both",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "PX4 SITL (lockstep over MAVLink)" in text and "PX4 lockstep round trip" in text
    rows = json.loads(out.read_text())["full_fidelity"]
    by_stack = {(r["flight_stack"], r["case"]): r for r in rows}
    for case in ("render off", "render every 4th, training 128x128", "render every step, full 640x480"):
        assert by_stack[("px4", case)]["steps_per_s"] > 0 and by_stack[("cascade", case)]["steps_per_s"] > 0
    # PX4 in lockstep costs more per step than the built-in cascade with the same render setting.
    assert by_stack[("px4", "render off")]["steps_per_s"] < by_stack[("cascade", "render off")]["steps_per_s"]
    assert 0 < by_stack[("px4", "px4 lockstep round trip")]["rtt_mean_us"] < 50_000


def test_bench_both_stacks_without_px4_names_the_fix(monkeypatch, capsys):
    monkeypatch.delenv("PX4_DIR", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert (
        main(
            [
                "bench",
                "--steps",
                "50",
                "--drones",
                "1",
                "--repeats",
                "1",
                "--no-render",
                "--full-fidelity-stacks",
                "both",
            ]
        )
        == 2
    )
    assert "PX4_DIR" in capsys.readouterr().err


def test_info_names_the_backend(capsys, monkeypatch):
    monkeypatch.delenv("FLYBY_BACKEND", raising=False)
    assert main(["info", "--flight-stack", "cascade"]) == 0
    text = capsys.readouterr().out
    assert "backend choice: mujoco" in text and "Simulator backend" in text and "MuJoCo" in text
    assert "GPU" in text and "built-in cascade (PX4 default gains), no PX4 (--flight-stack cascade)" in text


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


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "zero", "--seeds", "0"],
        ["record", "--duration", "1"],
        ["train", "--env", "full", "--budget-s", "1"],
    ],
)
def test_flight_stack_px4_without_px4_names_the_fix(command, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PX4_DIR", str(tmp_path / "PX4-Autopilot"))  # a checkout without a build
    assert main([*command, "--flight-stack", "px4"]) == 2
    err = capsys.readouterr().err
    assert f"PX4_DIR={str(tmp_path / 'PX4-Autopilot')!r}" in err and "build/px4_sitl_default/bin/px4" in err
    assert "make px4_sitl_default" in err  # how to build it
    monkeypatch.delenv("PX4_DIR")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no px4 anywhere
    assert main([*command, "--flight-stack", "px4"]) == 2
    assert "PX4_DIR is not set and there is no px4 on PATH" in capsys.readouterr().err


def test_bench_compares_the_kernels_in_one_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "--steps",
        "20",
        "--drones",
        "1,16",
        "--repeats",
        "1",
        "--no-render",
        "--no-full-fidelity",
    ]
    assert main([*args, "--kernel", "both", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "kernel numpy" in text and "kernel numba" in text
    assert "numba kernel over numpy reference, same run" in text and "MultiDroneISR-v0, 16 drones" in text
    data = json.loads(out.read_text())
    assert set(data["by_kernel"]) == {"numpy", "numba"}
    assert data["multi_drone"] == data["by_kernel"]["numba"]["multi_drone"]  # the default kernel's figures
    assert data["machine"]["kernel"] == "numba" and data["machine"]["numba"][0].isdigit()
    # The machine's limit (the dynamics kernel alone) beside every figure, as a share of it.
    assert "machine limit: the direct dynamics kernel alone" in text and "% of the limit" in text
    assert set(data["dynamics_limit"]) == {"1", "16"} and min(data["dynamics_limit"].values()) > 0


def test_dynamics_limit_refuses_bad_counts():
    from flyby.bench import measure_dynamics_limit

    with pytest.raises(ValueError, match="num_drones and steps must be >= 1, got 0 and 10"):
        measure_dynamics_limit(0, steps=10)


def test_bench_refuses_an_unknown_kernel_by_name(monkeypatch, capsys):
    monkeypatch.setenv("FLYBY_KERNEL", "cuda")
    assert main(["bench", "--steps", "5", "--no-render", "--no-full-fidelity"]) == 2
    err = capsys.readouterr().err
    assert "FLYBY_KERNEL='cuda'" in err and "numba, numpy" in err
