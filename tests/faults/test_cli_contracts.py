"""The ``flyby`` command line under bad input: nothing is lost, every refusal is one line and exit 2.

- Every output path is checked before any work (a file where a folder is needed, a folder where
  a file is needed, a destination that cannot be written): exit 2, one line naming the option
  and the path, and the long work (training, recording, episodes) never starts.
- Every save is atomic: a full disk (``OSError(ENOSPC)`` injected in the middle of the write)
  leaves the previous model / log / results file byte for byte, and no temporary file behind.
- ``flyby evaluate`` on a model of another env names both sets of spaces ("trained on another
  env"); on a corrupt file it says "not a flyby/SB3 model"; one line, no traceback.
- Integer options that must be positive (``--num-envs 0``) are refused, naming the value.
- MuJoCo's own warnings go to ``output/logs/mujoco.log``, never ``./MUJOCO_LOG.TXT``.

Everything runs in-process (``flyby.cli.main``) with tiny budgets; the heavy entry points are
replaced by stubs that fail the test if a refused command reaches them.
"""

from __future__ import annotations

import errno
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from flyby.cli import main

sb3 = pytest.importorskip("stable_baselines3")


# ---------------------------------------------------------------------------- helpers


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    """``flyby <argv>`` in this process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_refusal(err: str) -> str:
    """The stderr of a command refused before any work: exactly one line, no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


def _one_error_line(err: str, command: str) -> str:
    """The stderr of a command that failed after its work (progress bars above): one ``flyby
    <command>:`` line, no traceback."""
    lines = [ln for ln in err.splitlines() if ln.startswith("flyby ")]
    assert len(lines) == 1 and lines[0].startswith(f"flyby {command}: "), (
        f"expected one error line, got:\n{err}"
    )
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_work(monkeypatch):
    """Replace every long-running entry point with one that fails the test if it is called."""
    import flyby.bench
    import flyby.training.evaluate
    import flyby.training.record
    import flyby.training.train
    import flyby.training.trainer

    def started(*_args, **_kwargs):
        raise AssertionError("the command started its work before refusing its output path")

    for module, name in [
        (flyby.training.trainer, "train"),
        (flyby.training.train, "train_ppo"),
        (flyby.training.record, "record_trajectories"),
        (flyby.training.evaluate, "run_evaluation"),
        (flyby.bench, "measure_single_env"),
    ]:
        monkeypatch.setattr(module, name, started)


@pytest.fixture
def blocker(tmp_path) -> Path:
    """A plain file where the commands below expect a folder."""
    path = tmp_path / "blocker"
    path.write_text("not a folder\n")
    return path


def _tiny_ppo():
    """A real SB3 PPO model of a few hundred parameters (Pendulum: Box(3,) -> Box(1,))."""
    return sb3.PPO(
        "MlpPolicy", "Pendulum-v1", n_steps=16, batch_size=16, device="cpu", policy_kwargs={"net_arch": [4]}
    )


def _tiny_result(model):
    from flyby.training.train import TrainResult

    return TrainResult(
        model=model,
        wall_s=0.1,
        env_steps=16,
        episodes=0,
        kind="full",
        flight_stack="cascade",
        flight_stack_label="built-in cascade",
    )


class _FullDisk:
    """``os.fdopen`` whose write-mode files store half of the first write, then raise ENOSPC.

    Installed by :func:`full_disk`; counts the writes it broke so a test can prove the save was
    reached (and failed in the middle), not skipped.
    """

    def __init__(self) -> None:
        self.real = os.fdopen
        self.broken = 0

    def __call__(self, fd, mode="r", *args, **kwargs):
        fh = self.real(fd, mode, *args, **kwargs)
        if "w" not in mode and "a" not in mode:
            return fh
        disk = self

        class Half:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                fh.close()
                return False

            def write(self, data):
                fh.write(data[: len(data) // 2])
                fh.flush()
                disk.broken += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            def __getattr__(self, name):
                return getattr(fh, name)

        return Half()


@pytest.fixture
def full_disk(monkeypatch):
    """From the moment it is called, every atomic save (flyby.utils.atomic) hits a full disk mid-write."""

    def install() -> _FullDisk:
        import flyby.utils.atomic

        disk = _FullDisk()
        monkeypatch.setattr(flyby.utils.atomic.os, "fdopen", disk)
        return disk

    return install


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Files in ``folder`` other than ``keep`` (temporary files of a failed save)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ---------------------------------------------------------------------------- 1. output paths


def _cases(blocker: Path, tmp_path: Path) -> list[tuple[list, str, str]]:
    """(argv, option, what the message must say) for every command that writes."""
    a_dir = tmp_path / "a_folder"
    a_dir.mkdir(exist_ok=True)
    inside = blocker / "sub"
    return [
        (["train", "--out", blocker], "--out", "is a file, not a folder"),
        (["train", "--out", inside / "run"], "--out", "is a file, not a folder"),
        (
            ["train", "--env", "full", "--flight-stack", "cascade", "--out", inside / "m.zip"],
            "--out",
            "is a file",
        ),
        (["train", "--env", "full", "--flight-stack", "cascade", "--out", a_dir], "--out", "is a folder"),
        (["record", "--flight-stack", "cascade", "--out", inside / "x.npz"], "--out", "is a file"),
        (["record", "--flight-stack", "cascade", "--out", a_dir], "--out", "is a folder"),
        (["record", "--flight-stack", "cascade", "--plot", inside / "p.png"], "--plot", "is a file"),
        (
            ["evaluate", "zero", "--flight-stack", "cascade", "--out", blocker],
            "--out",
            "is a file, not a folder",
        ),
        (
            ["evaluate", "zero", "--flight-stack", "cascade", "--json", inside / "e.json"],
            "--json",
            "is a file",
        ),
        (["evaluate", "zero", "--flight-stack", "cascade", "--json", a_dir], "--json", "is a folder"),
        (
            ["evaluate", "zero", "--flight-stack", "cascade", "--video", inside / "v.mp4"],
            "--video",
            "is a file",
        ),
        (["evaluate", "zero", "--flight-stack", "cascade", "--video", "--out", inside], "--out", "is a file"),
        (["bench", "--json", inside / "b.json"], "--json", "is a file"),
        (["report", tmp_path, "--out", inside / "r.html"], "--out", "is a file"),
        (["export", "model.zip", "--out", blocker], "--out", "is a file, not a folder"),
        (["pipeline", "run1", "--output-dir", blocker], "--output-dir", "is a file, not a folder"),
        (["tune", "a.npz", "--held-out", "b.npz", "--out", inside / "t.yaml"], "--out", "is a file"),
        (["tune", "a.npz", "--held-out", "b.npz", "--plot", inside / "t.png"], "--plot", "is a file"),
        (["px4-log", "a.npz", "--plot", inside / "p.png"], "--plot", "is a file"),
        (["yolo-dataset", "--out", blocker], "--out", "is a file, not a folder"),
        (["yolo-train", "--out", inside / "w.pt"], "--out", "is a file"),
        (["yolo-train", "--run-dir", blocker], "--run-dir", "is a file, not a folder"),
        (["yolo-eval", "--json", inside / "e.json"], "--json", "is a file"),
    ]


@pytest.mark.parametrize("index", range(23))
def test_every_output_path_is_checked_before_work(index, blocker, tmp_path, capsys, no_work, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative defaults (output/...) land in the sandbox
    cases = _cases(blocker, tmp_path)
    assert len(cases) == 23
    argv, option, needle = cases[index]
    code, _, err = _run(capsys, argv)
    line = _one_line_refusal(err)
    assert code == 2, err
    assert line.startswith(f"flyby {argv[0]}: {option} "), line
    assert needle in line and "pass a" in line, line  # what is wrong and the fix
    assert blocker.read_text() == "not a folder\n"  # the file in the way is left alone
    assert not (tmp_path / "output").exists(), "a refused command created output folders"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc (not writable, even by root)")
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--out", "/proc/flyby-run"],
        ["train", "--env", "full", "--flight-stack", "cascade", "--out", "/proc/flyby/m.zip"],
        ["record", "--flight-stack", "cascade", "--out", "/proc/flyby/x.npz"],
        ["evaluate", "zero", "--flight-stack", "cascade", "--out", "/proc/flyby-eval"],
    ],
)
def test_an_unwritable_destination_is_refused_before_work(argv, capsys, no_work):
    code, _, err = _run(capsys, argv)
    line = _one_line_refusal(err)
    assert code == 2 and "/proc" in line and "is not writable" in line and "pass a" in line, line


def test_train_full_checks_its_zip_before_the_budget_is_spent(tmp_path, capsys, monkeypatch):
    # The case: --out into a folder that cannot be made; the budget was spent, then FileExistsError.
    calls = []
    monkeypatch.setattr("flyby.training.train.train_ppo", lambda *a, **k: calls.append(1))
    (tmp_path / "models").write_text("x")
    code, _, err = _run(
        capsys,
        [
            "train",
            "--env",
            "full",
            "--flight-stack",
            "cascade",
            "--budget-s",
            "600",
            "--out",
            tmp_path / "models" / "full.zip",
        ],
    )
    assert code == 2 and not calls
    assert "FileExistsError" not in err and f"{tmp_path / 'models'} is a file" in _one_line_refusal(err)


# ---------------------------------------------------------------------------- 2. atomic saves


def test_train_full_on_a_full_disk_keeps_the_previous_model(tmp_path, capsys, monkeypatch, full_disk):
    monkeypatch.setattr("flyby.training.train.train_ppo", lambda *a, **k: _tiny_result(_tiny_ppo()))
    out = tmp_path / "full.zip"
    argv = ["train", "--env", "full", "--flight-stack", "cascade", "--budget-s", "1", "--out", out]
    code, stdout, _ = _run(capsys, argv)
    assert code == 0 and f"wrote {out}" in stdout
    before_zip, before_json = out.read_bytes(), out.with_suffix(".json").read_bytes()
    disk = full_disk()
    code, _, err = _run(capsys, argv)
    line = _one_error_line(err, "train")
    assert disk.broken >= 1  # the save was reached and failed half-way
    assert code == 2 and f"cannot write {out}" in line and "No space left on device" in line, line
    assert "previous file, if any, is intact" in line and "free space" in line
    assert out.read_bytes() == before_zip and out.with_suffix(".json").read_bytes() == before_json
    assert _leftovers(tmp_path, {"full.zip", "full.json"}) == []
    sb3.PPO.load(out, device="cpu")  # still a whole model: no "No data found in the saved file"


def test_record_on_a_full_disk_keeps_the_previous_log(tmp_path, capsys, full_disk):
    from flyby.training.record import load_log

    out = tmp_path / "log.npz"
    argv = ["record", "--flight-stack", "cascade", "--duration", "0.2", "--kind", "steps", "--out", out]
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    before = out.read_bytes()
    disk = full_disk()
    code, _, err = _run(capsys, argv)
    line = _one_error_line(err, "record")
    assert disk.broken >= 1 and code == 2 and f"cannot write {out}" in line and "No space left" in line, line
    assert out.read_bytes() == before and _leftovers(tmp_path, {"log.npz"}) == []
    assert load_log(out).duration_s > 0


def test_evaluate_json_on_a_full_disk_keeps_the_previous_results(tmp_path, capsys, full_disk):
    out = tmp_path / "results.json"
    out.write_text('{"previous": true}\n')
    disk = full_disk()
    code, _, err = _run(
        capsys,
        [
            "evaluate",
            "zero",
            "--seeds",
            "0",
            "--episode-length-s",
            "0.5",
            "--flight-stack",
            "cascade",
            "--no-references",
            "--json",
            out,
        ],
    )
    assert disk.broken >= 1 and code == 2, err
    assert f"cannot write {out}" in _one_error_line(err, "evaluate")
    assert out.read_text() == '{"previous": true}\n' and _leftovers(tmp_path, {"results.json"}) == []


def test_trainer_model_save_on_a_full_disk_keeps_the_previous_model(tmp_path, full_disk):
    from flyby.errors import OutputError
    from flyby.training.trainer import _save_model_atomic

    path = tmp_path / "model.zip"
    _save_model_atomic(_tiny_ppo(), path)
    before = path.read_bytes()
    full_disk()
    with pytest.raises(OutputError, match="No space left on device"):
        _save_model_atomic(_tiny_ppo(), path)
    assert path.read_bytes() == before and _leftovers(tmp_path, {"model.zip"}) == []


def test_save_model_writes_a_whole_zip_with_the_file_mode_open_gives(tmp_path):
    from flyby.training.train import save_model

    path = save_model(_tiny_result(_tiny_ppo()), tmp_path / "m")  # suffix added
    assert path == tmp_path / "m.zip" and zipfile.is_zipfile(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.zip"]
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~mask


def test_a_file_system_error_from_any_writer_is_one_line(tmp_path, capsys, monkeypatch):
    # Writers outside flyby.utils.atomic (tune's YAML, a plot) may still raise a raw OSError.
    target = tmp_path / "dynamics_config.yaml"

    def full(_args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr("flyby.cli._cmd_info", full)
    code, _, err = _run(capsys, ["info"])
    assert code == 2
    assert _one_line_refusal(err) == (
        f"flyby info: {target}: No space left on device (free space, fix the "
        "permissions or pass another path)"
    )

    def refused(_args):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    monkeypatch.setattr("flyby.cli._cmd_info", refused)
    with pytest.raises(ConnectionRefusedError):  # not a file-system error: not hidden
        main(["info"])


# -------------------------------------------------------------------- 3. evaluate: foreign and corrupt models


def _corrupt_models(tmp_path: Path) -> dict[str, Path]:
    """Models that are not flyby/SB3 models, each its own kind of damage."""
    good = tmp_path / "pendulum.zip"
    _tiny_ppo().save(good)
    data = good.read_bytes()
    files = {
        "random_bytes": np.random.default_rng(0).bytes(2000),
        "empty": b"",
        "zip_header_only": b"PK\x03\x04" + b"garbage" * 10,
        "truncated": data[: len(data) // 2],
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.zip"
        paths[name].write_bytes(content)
    for name, member, content in [("bad_data", "data", b"{not json"), ("bad_weights", "policy.pth", b"junk")]:
        paths[name] = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(paths[name], "w") as dst:
            for n in src.namelist():
                dst.writestr(n, content if n == member else src.read(n))
    paths["other_zip"] = tmp_path / "other_zip.zip"
    with zipfile.ZipFile(paths["other_zip"], "w") as dst:
        dst.writestr("readme.txt", "hello")
    return paths


def test_evaluate_a_model_of_another_env_names_both_spaces(tmp_path, capsys):
    model = sb3.PPO(
        "MlpPolicy", "CartPole-v1", n_steps=8, batch_size=8, device="cpu", policy_kwargs={"net_arch": [4]}
    )
    model.save(tmp_path / "cartpole.zip")
    code, _, err = _run(
        capsys, ["evaluate", tmp_path / "cartpole.zip", "--seeds", "0", "--flight-stack", "cascade"]
    )
    line = _one_line_refusal(err)
    assert code == 2
    assert "trained on another env, not flyby/PX4ISR-v0" in line
    assert "observation space Box(" in line and "(4,), float32) (an SB3 CartPole model?)" in line
    assert "action space Discrete(2) but flyby/PX4ISR-v0 has Box(-1.0, 1.0, (4,), float32)" in line


def test_evaluate_a_corrupt_model_says_it_is_not_a_flyby_model(tmp_path, capsys):
    for name, path in _corrupt_models(tmp_path).items():
        code, _, err = _run(capsys, ["evaluate", path, "--seeds", "0", "--flight-stack", "cascade"])
        line = _one_line_refusal(err)  # torch's unpickling error alone is a dozen lines
        assert code == 2, name
        assert line.startswith("flyby evaluate: ") and str(path) in line, (name, line)
        assert "not a flyby/SB3 model" in line, (name, line)


def test_describe_space_is_one_line_for_any_box():
    import gymnasium as gym

    from flyby.training.policy_io import describe_space

    wide = gym.spaces.Box(low=-np.arange(1, 74, dtype=np.float32), high=np.arange(1, 74, dtype=np.float32))
    text = describe_space(wide)
    assert "\n" not in text and len(text) <= 160 and "(73,)" in text and "float32" in text, text
    assert describe_space(gym.spaces.Box(-1.0, 1.0, (4,), np.float32)) == "Box(-1.0, 1.0, (4,), float32)"


# ---------------------------------------------------------------------------- 4. integer options


@pytest.mark.parametrize(
    "argv, option, least, value",
    [
        (["train", "--num-envs", "0"], "--num-envs", 1, "0"),
        (["train", "--num-envs", "-3"], "--num-envs", 1, "-3"),
        (["train", "--env", "full", "--flight-stack", "cascade", "--num-envs", "0"], "--num-envs", 1, "0"),
        (["train", "--total-steps", "0"], "--total-steps", 1, "0"),  # was `0 or default`: 4,000,000 steps
        (["train", "--env", "full", "--timesteps-cap", "0"], "--timesteps-cap", 1, "0"),
        (["train", "--seed", "-1"], "--seed", 0, "-1"),
        (["train", "--env", "full", "--first-px4-instance", "-1"], "--first-px4-instance", 0, "-1"),
        (
            ["record", "--seed", "-1"],
            "--seed",
            0,
            "-1",
        ),  # was numpy's "expected non-negative integer" traceback
        (["record", "--px4-instance", "-2"], "--px4-instance", 0, "-2"),
        (["evaluate", "zero", "--episodes", "0"], "--episodes", 1, "0"),
        (["bench", "--render-frames", "0"], "--render-frames", 1, "0"),  # was a NaN figure
        (["bench", "--steps", "-1"], "--steps", 1, "-1"),
        (["bench", "--repeats", "0"], "--repeats", 1, "0"),
    ],
)
def test_integer_options_out_of_range_are_refused(argv, option, least, value, capsys, no_work):
    code, _, err = _run(capsys, argv)
    line = _one_line_refusal(err)
    assert code == 2 and line == f"flyby {argv[0]}: {option} must be >= {least}, got {value}", line


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["evaluate", "zero", "--px4-instances", "0"], "--px4-instances: 0 must be >= 1"),
        (["evaluate", "zero", "--first-px4-instance", "-1"], "--first-px4-instance: -1 must be in 0..9"),
        (["pipeline", "run1", "--eval-episodes", "0"], "eval_episodes: 0 must be >= 2"),
        (["yolo-train", "--epochs", "0"], "epochs: 0 is out of range"),
    ],
)
def test_integer_options_a_command_checks_itself_are_refused_before_work(argv, needle, capsys, no_work):
    # Already handled before this issue (each command's own check, every problem at once): documented here.
    code, _, err = _run(capsys, argv)
    assert code == 2 and needle in err and "Traceback" not in err, err


def test_num_envs_zero_is_not_silently_the_default(capsys, monkeypatch):
    # The case: `--env full --num-envs 0` trained 4 envs (`args.num_envs or FULL_NUM_ENVS`).
    seen = []
    monkeypatch.setattr("flyby.training.train.train_ppo", lambda *a, **k: seen.append(k["num_envs_full"]))
    assert _run(capsys, ["train", "--env", "full", "--flight-stack", "cascade", "--num-envs", "0"])[0] == 2
    assert seen == []


def test_bench_drone_counts_that_are_not_integers(capsys, no_work):
    code, _, err = _run(capsys, ["bench", "--drones", "1,four", "--steps", "10", "--repeats", "1"])
    assert code == 2
    assert "--drones: 'four' in '1,four' is not an integer" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- 5. MuJoCo's log


def test_mujoco_warnings_go_to_output_logs_not_the_working_folder(tmp_path, monkeypatch, caplog):
    import mujoco

    import flyby.sim.mujoco_backend  # noqa: F401  (importing the backend routes MuJoCo's warnings)
    from flyby.sim.mujoco_log import mujoco_log_path

    monkeypatch.chdir(tmp_path)
    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><freejoint/><geom size="0.1"/></body></worldbody></mujoco>'
    )
    data = mujoco.MjData(model)
    data.qvel[:] = np.inf  # a blow-up: MuJoCo warns mjWARN_BADQVEL and resets the state
    with caplog.at_level("WARNING", logger="flyby.sim.mujoco"):
        mujoco.mj_step(model, data)
    assert data.warning[mujoco.mjtWarning.mjWARN_BADQVEL].number >= 1  # the warning did fire
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists(), "MuJoCo wrote its log into the working folder"
    log = (tmp_path / mujoco_log_path()).read_text()
    assert mujoco_log_path() == Path("output/logs/mujoco.log")
    assert "WARNING Nan, Inf or huge value in QVEL at DOF 0" in log
    assert any("QVEL" in r.getMessage() for r in caplog.records)


def test_mujoco_warning_callback_never_raises_on_an_unwritable_log(tmp_path, monkeypatch):
    import flyby.sim.mujoco_backend  # noqa: F401
    from flyby.sim.mujoco_log import _on_mujoco_warning

    monkeypatch.chdir(tmp_path)
    (tmp_path / "output").write_text("a file where output/ should be")
    _on_mujoco_warning("Nan, Inf or huge value in QACC at DOF 0.")  # must not raise inside MuJoCo's C code
    assert (tmp_path / "output").read_text() == "a file where output/ should be"


def test_full_disk_fixture_breaks_writes_mid_way(tmp_path, full_disk):
    """The fault injector itself: half the bytes land, then ENOSPC.

    So the tests above test a real mid-write.
    """
    from flyby.utils.atomic import atomic_write_bytes

    disk = full_disk()
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(tmp_path / "a.bin", b"x" * 1000)
    assert disk.broken == 1 and list(tmp_path.iterdir()) == []
