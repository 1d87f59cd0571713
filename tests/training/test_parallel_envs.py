"""Parallel PX4ISR-v0 envs in worker processes: instance ranges, serial == parallel evaluation, SB3 VecEnv
semantics, and (with real PX4, marked ``px4``) that no PX4 survives a run, a killed worker, Ctrl-C or a
killed parent.

The real-PX4 tests fly PX4 instances 2 and 3 (TCP 4562-4563, UDP 14542-14543).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import pytest

pytest.importorskip("stable_baselines3", reason='needs the train extra: pip install "flyby[train]"')

from flyby.cli import main
from flyby.errors import ConfigError, FlybyError
from flyby.training.evaluate import RandomPolicy, ZeroPolicy, evaluate_policy_full_fidelity
from flyby.training.parallel import (
    EnvPool,
    EnvWorkerError,
    check_px4_instances,
    make_px4_pool,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRST = 2  # PX4 instances these tests fly: 2 and 3
EPISODE_S = 1.0  # s, 25 control steps
TINY = {"n_steps": 32, "batch_size": 32, "n_epochs": 1, "net_arch": [16]}


@pytest.fixture(scope="module")
def eval_cfg():
    from flyby.config.evaluation import load_evaluation_cfg

    cfg = load_evaluation_cfg().px4_env
    return replace(cfg, episode_length_s=EPISODE_S, px4=replace(cfg.px4, instance=FIRST))


# ----------------------------------------------------------------------------------------- bad input


def test_instance_ranges():
    assert check_px4_instances(1) == [0]
    assert check_px4_instances(4, 2) == [2, 3, 4, 5]
    assert check_px4_instances(10, 0) == list(range(10))
    assert check_px4_instances(np.int64(2), np.int64(8)) == [8, 9]


@pytest.mark.parametrize(
    ("n", "first", "message"),
    [
        (0, 0, "px4_instances: 0 must be >= 1"),
        (-3, 2, "px4_instances: -3 must be >= 1"),
        (11, 0, "px4_instances: 11 is more than 10; PX4 SITL runs instances 0..9 only"),
        (
            3,
            8,
            "3 instances from first instance 8 run to instance 10, past PX4 SITL's last usable instance 9; "
            "use at most 2 instances, or a first instance of at most 7",
        ),
        (10, 1, "run to instance 10"),
        (2, -1, "first_px4_instance: -1 must be in 0..9"),
        (2, 10, "first_px4_instance: 10 must be in 0..9"),
        (True, 0, "px4_instances: True is not an integer"),
        (2.0, 0, "px4_instances: 2.0 is not an integer"),
    ],
)
def test_bad_instance_ranges_are_refused(n, first, message):
    with pytest.raises(ConfigError) as exc:
        check_px4_instances(n, first)
    assert message in str(exc.value)


def test_every_problem_at_once():
    with pytest.raises(ConfigError) as exc:
        check_px4_instances(0, 12)
    assert [p.split(" (")[0] for p in exc.value.problems] == [
        "px4_instances: 0 must be >= 1",
        "first_px4_instance: 12 must be in 0..9",
    ]


@pytest.mark.parametrize(
    ("n", "first", "message"),
    [
        (0, None, "px4_instances: 0 must be >= 1"),
        (11, None, "px4_instances: 11 is more than 10"),
        (3, 8, "run to instance 10"),
    ],
)
def test_evaluate_refuses_bad_counts_before_starting_anything(n, first, message):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=message):
        evaluate_policy_full_fidelity(
            ZeroPolicy(), [0, 1], flight_stack="px4", px4_instances=n, first_px4_instance=first
        )
    assert time.perf_counter() - t0 < 2.0  # refused before an env or a worker exists


def test_train_refuses_bad_counts_and_a_flight_stack_for_direct():
    from flyby.training.train import train_ppo

    with pytest.raises(ConfigError, match="num_envs_full: 11 is more than 10"):
        train_ppo("full", budget_s=1.0, seed=0, flight_stack="px4", num_envs_full=11)
    with pytest.raises(
        ConfigError, match="num_envs_full: 3 instances from first instance 8 run to instance 10"
    ):
        train_ppo("full", budget_s=1.0, seed=0, flight_stack="px4", num_envs_full=3, first_px4_instance=8)
    with pytest.raises(ConfigError, match="num_envs_full: 0 must be an integer >= 1"):
        train_ppo("full", budget_s=1.0, seed=0, num_envs_full=0)
    with pytest.raises(ConfigError, match="flight_stack: 'px4' applies to kind 'full' only"):
        train_ppo("direct", budget_s=1.0, seed=0, flight_stack="px4")


def test_cli_refuses_bad_counts(capsys):
    assert main(["evaluate", "zero", "--px4-instances", "0"]) == 2
    assert "--px4-instances: 0 must be >= 1" in capsys.readouterr().err
    assert main(["evaluate", "zero", "--px4-instances", "11"]) == 2
    assert "--px4-instances: 11 is more than 10" in capsys.readouterr().err
    assert main(["evaluate", "zero", "--px4-instances", "3", "--first-px4-instance", "8"]) == 2
    err = capsys.readouterr().err
    assert "3 instances from first instance 8 run to instance 10" in err and "at most 2 instances" in err
    assert main(["train", "--env", "full", "--flight-stack", "px4", "--num-envs", "12"]) == 2
    assert "--num-envs: 12 is more than 10" in capsys.readouterr().err
    assert main(["train", "--env", "direct", "--flight-stack", "px4"]) == 2
    assert "apply to --env full only" in capsys.readouterr().err


def test_cli_help_names_the_new_options(capsys):
    for command, needles in (
        ("evaluate", ("--px4-instances", "--first-px4-instance", "default auto")),
        ("train", ("--flight-stack {auto,px4,cascade}", "--first-px4-instance")),
    ):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        for needle in needles:
            assert needle in text, (command, needle)


# ------------------------------------------------------------------------ serial == parallel (cascade)


@pytest.fixture(scope="module")
def untrained_ppo():
    from stable_baselines3 import PPO

    from flyby.training.train import PPOCfg, make_train_env

    venv = make_train_env("direct", seed=0, num_drones=1)
    try:
        return PPO(
            "MlpPolicy", venv, seed=0, device="cpu", **PPOCfg(**{**TINY, "net_arch": (16,)}).sb3_kwargs()
        )
    finally:
        venv.close()


def test_parallel_evaluation_equals_serial_on_the_cascade(eval_cfg, untrained_ppo):
    seeds = [4, 0, 7]

    def east(obs):  # a closure: travels to the workers by value
        return np.array([0.4, 0.1 * obs[0], 0.0, 0.2], dtype=np.float32)

    for policy in (RandomPolicy(), untrained_ppo, east):
        serial = evaluate_policy_full_fidelity(policy, seeds, env_cfg=eval_cfg)
        parallel = evaluate_policy_full_fidelity(
            policy, seeds, env_cfg=eval_cfg, px4_instances=2, first_px4_instance=FIRST
        )
        assert parallel.seeds == seeds  # episode k is seed k, in order, whatever worker ran it
        np.testing.assert_array_equal(parallel.returns, serial.returns)
        assert parallel.episodes == serial.episodes
        assert (serial.parallel_envs, parallel.parallel_envs) == (1, 2)
        for r in (serial, parallel):
            assert r.flight_stack == "cascade" and "cascade" in r.flight_stack_label and r.px4_instances == []
            assert r.flight_stack_label in r.describe()
    assert len(set(serial.returns)) == 3  # three seeds, three different episodes: the comparison can fail


def test_more_instances_than_episodes_uses_one_env_per_episode(eval_cfg):
    r = evaluate_policy_full_fidelity(ZeroPolicy(), [3, 1], env_cfg=eval_cfg, px4_instances=4)
    assert r.parallel_envs == 2 and r.seeds == [3, 1]


def test_unpicklable_policy_is_refused_before_the_workers_start(eval_cfg):
    lock = threading.Lock()

    def policy(obs):
        with lock:
            return np.zeros(4, dtype=np.float32)

    with pytest.raises(TypeError, match="cannot be sent to the parallel env workers.*px4_instances=1"):
        evaluate_policy_full_fidelity(policy, [0, 1], env_cfg=eval_cfg, px4_instances=2)


def test_cli_evaluate_parallel_names_the_flight_stack(tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                "random",
                "--seeds",
                "0..2",
                "--episode-length-s",
                "1",
                "--flight-stack",
                "cascade",
                "--px4-instances",
                "2",
                "--first-px4-instance",
                str(FIRST),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "flight stack: built-in cascade" in text and "2 parallel envs" in text
    # The table's figures are followed by the line naming what flew them.
    assert "\nflight stack: built-in cascade (PX4 default gains), no PX4; seeds 0..2" in text
    data = json.loads(out.read_text())
    assert data["flight_stack"] == "cascade" and data["parallel_envs"] == 2
    assert (
        data["results"][0]["flight_stack"] == "cascade"
        and "cascade" in data["results"][0]["flight_stack_label"]
    )
    serial = evaluate_policy_full_fidelity(RandomPolicy(), [0, 1, 2], episode_length_s=1.0)
    assert data["results"][0]["returns"] == serial.returns.tolist()


# --------------------------------------------------------------------------------- the pool and SB3


def test_pool_vec_env_steps_like_dummy_vec_env(eval_cfg):
    """PoolVecEnv (workers) and DummyVecEnv (in process) step alike.

    Same seeds -> same obs, rewards, dones, autoresets.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    from flyby.envs.px4_env import PX4ISREnv
    from flyby.training.pool_vec_env import PoolVecEnv

    cfg = replace(eval_cfg, episode_length_s=0.2)  # 5 steps: the run crosses two autoresets
    pooled = PoolVecEnv(make_px4_pool(cfg, "cascade", 2, FIRST))
    dummy = DummyVecEnv([lambda: PX4ISREnv(cfg, flight_stack="cascade")] * 2)
    try:
        assert pooled.flight_stack == "cascade" and pooled.num_envs == 2
        assert pooled.get_attr("flight_stack_label") == [dummy.envs[0].flight_stack_label] * 2
        for venv in (pooled, dummy):
            venv.seed(11)
        obs = [pooled.reset(), dummy.reset()]
        np.testing.assert_array_equal(*obs)
        rng = np.random.default_rng(0)
        dones_seen = 0
        for _ in range(12):
            actions = rng.uniform(-1, 1, (2, 4)).astype(np.float32)
            (o1, r1, d1, i1), (o2, r2, d2, i2) = pooled.step(actions), dummy.step(actions)
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_allclose(r1, r2, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(d1, d2)
            for a, b in zip(i1, i2):
                if "terminal_observation" in b:
                    np.testing.assert_array_equal(a["terminal_observation"], b["terminal_observation"])
                    assert a["TimeLimit.truncated"] == b["TimeLimit.truncated"]
            dones_seen += int(d1.sum())
        assert dones_seen == 4
        assert pooled.env_is_wrapped(PX4ISREnv) == [True, True]
    finally:
        pooled.close()
        dummy.close()
    assert pooled.pool.closed and not any(_alive(p) for p in pooled.pool.pids)


def _boom():
    raise ConfigError(["worlds.seed: -1 must be >= 0"])


def _workers_of_this_process() -> list[psutil.Process]:
    out = []
    for c in psutil.Process().children():
        try:
            if "spawn_main" in " ".join(c.cmdline()) and c.status() != psutil.STATUS_ZOMBIE:
                out.append(c)
        except psutil.NoSuchProcess:
            pass
    return out


def test_a_failing_worker_stops_the_whole_pool():
    import gymnasium as gym

    before = {p.pid for p in _workers_of_this_process()}
    with pytest.raises(ConfigError, match="worlds.seed: -1") as exc:  # a flyby error keeps its type
        EnvPool([lambda: gym.make("CartPole-v1"), _boom], start_timeout_s=60)
    notes = getattr(exc.value, "__notes__", None)
    if notes is not None:  # Python >= 3.11: the worker and its traceback ride along
        assert any("env worker 1" in n and "_boom" in n for n in notes), notes
    left = [p for p in _workers_of_this_process() if p.pid not in before]
    assert not left, f"workers still running after the pool failed to start: {left}"


def test_a_killed_worker_is_reported_and_the_rest_stopped():
    import gymnasium as gym

    pool = EnvPool([lambda: gym.make("CartPole-v1")] * 2, names=["alpha", "beta"])
    try:
        obs, _ = pool.call(0, "reset", 0, None)
        assert obs.shape == (4,)
        os.kill(pool.pids[1], signal.SIGKILL)
        with pytest.raises(EnvWorkerError, match=r"beta \(pid \d+\) was killed by signal 9"):
            pool.call(1, "reset", 0, None)
        with pytest.raises(EnvWorkerError, match="alpha raised builtins.KeyError"):
            pool.call(0, "run", _key_error, ())
    finally:
        pool.close()
    assert not any(_alive(p) for p in pool.pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.call(0, "reset", 0, None)


def _key_error(env, state):
    return {}["missing"]


# ---------------------------------------------------------------------------------------- training


def test_full_kind_records_its_flight_stack(tmp_path):
    from stable_baselines3 import PPO

    from flyby.training.train import train_ppo

    r = train_ppo(
        "full",
        budget_s=60.0,
        seed=0,
        total_timesteps_cap=32,
        ppo_kwargs=TINY,
        num_envs_full=1,
        episode_length_s=EPISODE_S,
        progress=False,
        save_path=tmp_path / "full",
    )
    assert (r.flight_stack, r.px4_instances) == ("cascade", []) and "cascade" in r.flight_stack_label
    summary = json.loads((tmp_path / "full.json").read_text())
    assert summary["flight_stack"] == "cascade" and summary["flight_stack_label"] == r.flight_stack_label
    loaded = PPO.load(tmp_path / "full.zip", device="cpu")
    assert loaded.flyby_training == {
        "kind": "full",
        "flight_stack": "cascade",
        "flight_stack_label": r.flight_stack_label,
        "px4_instances": [],
    }


# ------------------------------------------------------------------------------------- real PX4 SITL


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _px4_under(pid: int) -> list[psutil.Process]:
    """PX4 processes (and their start-up shells) below ``pid``."""
    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in procs:
        try:
            if "px4" in " ".join(p.cmdline()) and "multiprocessing" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _px4_mains(procs: list[psutil.Process]) -> list[psutil.Process]:
    mains = []
    for p in procs:
        try:
            cmd = p.cmdline()
        except psutil.NoSuchProcess:
            continue
        if cmd and cmd[0].endswith("/bin/px4") and "-i" in cmd:
            mains.append(p)
    return mains


def _assert_all_gone(procs: list[psutil.Process], timeout_s: float = 20.0) -> None:
    """Every process in ``procs`` and in their process groups has exited (zombies count as gone)."""
    groups = set()
    for p in procs:
        try:
            groups.add(os.getpgid(p.pid))
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    left: list = []
    while time.monotonic() < deadline:
        left = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        for proc in psutil.process_iter(["pid"]):
            try:
                if (
                    os.getpgid(proc.pid) in groups
                    and proc.status() != psutil.STATUS_ZOMBIE
                    and proc not in left
                ):
                    left.append(proc)
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
        if not left:
            return
        time.sleep(0.2)
    raise AssertionError(f"still running after {timeout_s} s: {[(p.pid, p.cmdline()) for p in left]}")


class _Watch:
    """Polls this process's descendants for PX4 processes while a block runs."""

    def __init__(self) -> None:
        self.seen: dict[int, psutil.Process] = {}
        self.instances: set[int] = set()  # PX4 instance numbers seen (px4 -i <i>)
        self.max_at_once = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            procs = _px4_under(os.getpid())
            for p in procs:
                self.seen.setdefault(p.pid, p)
            mains = _px4_mains(procs)
            self.max_at_once = max(self.max_at_once, len(mains))
            for p in mains:
                try:
                    cmd = p.cmdline()
                    self.instances.add(int(cmd[cmd.index("-i") + 1]))
                except (psutil.NoSuchProcess, ValueError, IndexError):
                    pass
            self._stop.wait(0.1)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.px4
def test_two_px4_instances_evaluate_two_episodes_and_leave_no_px4(px4_binary, eval_cfg):
    cfg = replace(eval_cfg, episode_length_s=0.5)
    with _Watch() as watch:
        r = evaluate_policy_full_fidelity(
            RandomPolicy(), [0, 1], env_cfg=cfg, flight_stack="px4", px4_instances=2, first_px4_instance=FIRST
        )
    assert (
        r.flight_stack == "px4"
        and "PX4 SITL" in r.flight_stack_label
        and r.px4_instances == [FIRST, FIRST + 1]
    )
    assert r.parallel_envs == 2 and r.seeds == [0, 1]
    assert all(1 <= e.steps <= 13 for e in r.episodes) and np.isfinite(r.returns).all()
    assert watch.max_at_once == 2, f"expected 2 PX4s flying at once, saw at most {watch.max_at_once}"
    assert watch.instances == {FIRST, FIRST + 1}
    _assert_all_gone(list(watch.seen.values()), timeout_s=5.0)


@pytest.mark.px4
def test_a_killed_px4_worker_takes_its_px4_along(px4_binary, eval_cfg):
    pool = make_px4_pool(eval_cfg, "px4", 2, FIRST)
    try:
        px4s = {}
        for j, pid in enumerate(pool.pids):
            px4s[j] = _px4_under(pid)
            assert len(_px4_mains(px4s[j])) == 1, f"worker {j} should run exactly one PX4: {px4s[j]}"
        os.kill(pool.pids[0], signal.SIGKILL)
        _assert_all_gone(px4s[0], timeout_s=10.0)  # PR_SET_PDEATHSIG: the kernel kills worker 0's PX4
        with pytest.raises(
            EnvWorkerError, match=rf"PX4 instance {FIRST}\) \(pid \d+\) was killed by signal 9"
        ):
            pool.call(0, "reset", 0, None)
    finally:
        pool.close()
    _assert_all_gone(px4s[1], timeout_s=10.0)


_PARENT_SCRIPT = """
import sys
from dataclasses import replace
from flyby.training.evaluate import ZeroPolicy, evaluate_policy_full_fidelity
from flyby.config.evaluation import load_evaluation_cfg

cfg = load_evaluation_cfg().px4_env
cfg = replace(cfg, episode_length_s=600.0)
evaluate_policy_full_fidelity(ZeroPolicy(), [0, 1], env_cfg=cfg, flight_stack="px4", px4_instances=2,
                              first_px4_instance={first})
"""


@pytest.mark.px4
@pytest.mark.parametrize("how", ["ctrl-c", "parent-killed"])
def test_no_px4_survives_ctrl_c_or_a_killed_parent(px4_binary, how, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(_PARENT_SCRIPT.format(first=FIRST)))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "wb") as stderr:  # a file, not a pipe: the workers hold it open too
        parent = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=REPO_ROOT,
            env=env,
            stderr=stderr,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 45.0
        px4s: list[psutil.Process] = []
        while time.monotonic() < deadline and len(_px4_mains(px4s)) < 2:
            assert parent.poll() is None, stderr_path.read_text()
            px4s = _px4_under(parent.pid)
            time.sleep(0.2)
        assert len(_px4_mains(px4s)) == 2, f"two PX4s should fly under the parent, found {px4s}"
        workers = [
            psutil.Process(c.pid)
            for c in psutil.Process(parent.pid).children()
            if "spawn_main" in " ".join(c.cmdline())
        ]
        assert len(workers) == 2
        workdirs = [Path(p.cwd()) for p in _px4_mains(px4s)]  # PX4's fresh working directories
        assert all(d.name.startswith("flyby_px4_") and d.is_dir() for d in workdirs), workdirs
        time.sleep(1.0)  # into the episodes
        if how == "ctrl-c":
            os.killpg(parent.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        else:
            os.kill(parent.pid, signal.SIGKILL)  # no cleanup at all in the parent
        code = parent.wait(timeout=40.0)
        err = stderr_path.read_text()
        if how == "ctrl-c":
            assert code != 0 and "KeyboardInterrupt" in err, err
        _assert_all_gone(px4s + workers, timeout_s=20.0)
        # Stopped in order (env closed, PX4 stopped by its launcher), not only killed: workdirs removed.
        assert not any(d.exists() for d in workdirs), workdirs
    finally:
        for pid in (parent.pid,):  # the parent's group holds its workers; SIGTERM makes them stop their PX4
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        parent.wait()


@pytest.mark.px4
def test_train_full_on_two_px4_instances_records_px4(px4_binary, tmp_path):
    from stable_baselines3 import PPO

    from flyby.training.train import train_ppo

    with _Watch() as watch:
        r = train_ppo(
            "full",
            budget_s=120.0,
            seed=0,
            total_timesteps_cap=32,
            ppo_kwargs={**TINY, "n_steps": 16},
            num_envs_full=2,
            episode_length_s=0.4,
            progress=False,
            flight_stack="px4",
            first_px4_instance=FIRST,
            save_path=tmp_path / "px4",
        )
    assert r.flight_stack == "px4" and r.px4_instances == [FIRST, FIRST + 1] and r.num_envs == 2
    assert r.env_steps == 32 and r.episodes >= 2  # 16 steps of each env, 10-step episodes
    assert watch.max_at_once == 2 and watch.instances == {FIRST, FIRST + 1}
    summary = json.loads((tmp_path / "px4.json").read_text())
    assert summary["flight_stack"] == "px4" and summary["px4_instances"] == [FIRST, FIRST + 1]
    assert PPO.load(tmp_path / "px4.zip", device="cpu").flyby_training["flight_stack"] == "px4"
    _assert_all_gone(list(watch.seen.values()), timeout_s=5.0)


def test_worker_errors_are_flyby_errors():
    assert issubclass(EnvWorkerError, FlybyError)
