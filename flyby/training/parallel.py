"""Parallel envs in worker processes: N ``PX4ISR-v0`` copies, each flying its own PX4 SITL instance.

:class:`EnvPool` runs one env per worker process (``multiprocessing`` "spawn": a fresh
interpreter, no forked threads or GL contexts). Parallel evaluation
(:func:`flyby.training.evaluate.evaluate_policy_full_fidelity` with ``px4_instances > 1``),
PX4 baseline training (:class:`flyby.training.pool_vec_env.PoolVecEnv`, an SB3 ``VecEnv``)
and the instance benchmark all run on it. Worker ``j`` of a PX4 pool builds its env with
``PX4Cfg.instance = first + j``, so its PX4 listens on TCP ``4560 + first + j`` and UDP
``14540 + first + j`` in its own fresh working directory (:mod:`flyby.px4.launcher`).

Start and stop together: the constructor starts every worker and waits until every env is
built (for PX4: every PX4 started and connected); when any of them fails, all are stopped
and the error is raised. :meth:`EnvPool.close` stops them all. No PX4 outlives the pool:

- a worker closes its env (which stops its PX4: SIGINT, then SIGKILL after
  ``PX4Cfg.timeout_s``) when told to close, when the parent's end of its pipe closes, and on
  SIGTERM (which :meth:`EnvPool.close` sends to a worker that is busy);
- Ctrl-C: workers ignore SIGINT (a terminal sends it to the whole process group), so only
  the parent is interrupted and its ``finally`` / ``with`` closes the pool in order;
- the parent dies without cleaning up (SIGKILL, crash): Linux sends every worker SIGTERM
  (``PR_SET_PDEATHSIG``), and the worker closes its env;
- a worker dies without cleaning up: its PX4 is SIGKILLed by the kernel
  (``PR_SET_PDEATHSIG``, set by :class:`flyby.px4.launcher.PX4Launcher`), and the pool
  raises :class:`EnvWorkerError` at its next call.

PX4 SITL numbers its instances 0..9 here (:data:`MAX_PX4_INSTANCE`): above 9 the offboard
links of several instances share one UDP port (PX4's own limit, enforced by
:class:`flyby.px4.flight_stack.PX4FlightStack`), so :func:`check_px4_instances` refuses more
than 10 instances, or a range that runs past instance 9.

Workers do not re-run the parent's ``__main__`` (env factories and policies travel by value,
with cloudpickle), so a script using a pool needs no ``if __name__ == "__main__":`` guard.

Example::

    from flyby.training.parallel import EnvPool, px4_env_fns

    with EnvPool(px4_env_fns(cfg, "px4", num_envs=2, first_instance=2)) as pool:   # PX4 instances 2, 3
        obs, info = pool.call(0, "reset", 7, None)
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from multiprocessing.connection import wait
from typing import Any

import numpy as np

from flyby.errors import ConfigError, FlybyError
from flyby.px4.launcher import MAX_PX4_INSTANCE

log = logging.getLogger(__name__)

MAX_PX4_INSTANCES = MAX_PX4_INSTANCE + 1  # instances 0..9


class EnvWorkerError(FlybyError, RuntimeError):
    """An env worker process failed: it raised, died, or did not answer.

    When it raised, the message carries its traceback.
    """


def check_px4_instances(
    num_instances: int,
    first_instance: int = 0,
    *,
    count_name: str = "px4_instances",
    first_name: str = "first_px4_instance",
) -> list[int]:
    """The PX4 instances ``first_instance .. first_instance + num_instances - 1``, checked.

    Args:
        num_instances: parallel PX4 instances (= parallel envs), 1..10.
        first_instance: PX4 instance of the first env (TCP 4560 + i, UDP 14540 + i), 0..9.
        count_name, first_name: how the messages name the two values (the caller's argument names).

    Returns:
        The instance numbers, one per env.

    Raises:
        ConfigError: a count below 1 or above 10, a first instance outside 0..9, or a range
            that runs past instance 9; every problem at once, each with the fix.
    """
    problems = []
    n_ok = _is_int(num_instances)
    first_ok = _is_int(first_instance)
    if not n_ok:
        problems.append(
            f"{count_name}: {num_instances!r} is not an integer; pass a count from 1 to {MAX_PX4_INSTANCES}"
        )
    elif num_instances < 1:
        problems.append(f"{count_name}: {num_instances} must be >= 1 (1 = one env in this process)")
    elif num_instances > MAX_PX4_INSTANCES:
        problems.append(
            f"{count_name}: {num_instances} is more than {MAX_PX4_INSTANCES}; PX4 SITL runs instances "
            f"0..{MAX_PX4_INSTANCE} only (above {MAX_PX4_INSTANCE} the offboard UDP ports collide on 14549); "
            f"use at most {MAX_PX4_INSTANCES}"
        )
    if not first_ok:
        problems.append(f"{first_name}: {first_instance!r} is not an integer; pass 0..{MAX_PX4_INSTANCE}")
    elif not 0 <= first_instance <= MAX_PX4_INSTANCE:
        problems.append(f"{first_name}: {first_instance} must be in 0..{MAX_PX4_INSTANCE}")
    if not problems:
        last = first_instance + num_instances - 1
        if last > MAX_PX4_INSTANCE:
            problems.append(
                f"{count_name}: {num_instances} instances from first instance {first_instance} "
                f"run to instance {last}, past PX4 SITL's last usable instance {MAX_PX4_INSTANCE}; "
                f"use at most {MAX_PX4_INSTANCE + 1 - first_instance} instances, "
                f"or a first instance of at most {MAX_PX4_INSTANCE + 1 - num_instances}"
            )
    if problems:
        raise ConfigError(problems)
    return list(range(int(first_instance), int(first_instance) + int(num_instances)))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def make_px4_env(cfg, flight_stack: str, render_mode: str | None = None):
    """Build one ``PX4ISREnv`` (what a worker of :func:`px4_env_fns` runs)."""
    from flyby.envs.px4_env import PX4ISREnv

    return PX4ISREnv(cfg, flight_stack=flight_stack, render_mode=render_mode)


class _EnvFactory:
    """A picklable ``() -> PX4ISREnv`` (a config, a flight stack and a render mode)."""

    def __init__(self, cfg, flight_stack: str, render_mode: str | None) -> None:
        self.cfg, self.flight_stack, self.render_mode = cfg, flight_stack, render_mode

    def __call__(self):
        return make_px4_env(self.cfg, self.flight_stack, self.render_mode)


def px4_env_fns(
    cfg, flight_stack: str, num_envs: int, first_instance: int | None = None, render_mode: str | None = None
) -> list[Callable[[], Any]]:
    """``num_envs`` factories of ``PX4ISREnv`` on ``cfg``, env ``j`` on PX4 instance ``first + j``.

    Args:
        cfg: ``PX4EnvCfg`` of every env (only ``px4.instance`` differs between them).
        flight_stack: ``"px4"`` or ``"cascade"`` (resolve ``"auto"`` once, in the parent, with
            :func:`flyby.envs.px4_env.resolve_flight_stack`, so every worker flies the same stack).
        num_envs: parallel envs, 1..10.
        first_instance: PX4 instance of env 0; None: ``cfg.px4.instance``.
        render_mode: ``None`` (render off) or ``"rgb_array"``.

    Raises:
        ConfigError: bad count or instance range (:func:`check_px4_instances`).
    """
    first = cfg.px4.instance if first_instance is None else first_instance
    instances = check_px4_instances(num_envs, first)
    stack = getattr(flight_stack, "value", flight_stack)
    return [
        _EnvFactory(replace(cfg, px4=replace(cfg.px4, instance=i)), stack, render_mode) for i in instances
    ]


def make_px4_pool(
    cfg,
    flight_stack: str,
    num_envs: int,
    first_instance: int | None = None,
    *,
    render_mode: str | None = None,
    **pool_kwargs,
) -> EnvPool:
    """An :class:`EnvPool` of ``num_envs`` ``PX4ISREnv`` (see :func:`px4_env_fns`), workers named
    after their PX4 instance (``"env worker 1 (PX4 instance 3)"``).

    Raises:
        ConfigError: bad count or instance range.
        PX4Unavailable: a PX4 did not start (every other worker is stopped first).
    """
    fns = px4_env_fns(cfg, flight_stack, num_envs, first_instance, render_mode)
    stack = getattr(flight_stack, "value", flight_stack)
    names = [
        f"env worker {j} (PX4 instance {fn.cfg.px4.instance})"
        if stack == "px4"
        else f"env worker {j} ({stack})"
        for j, fn in enumerate(fns)
    ]
    return EnvPool(fns, names=names, **pool_kwargs)


# --------------------------------------------------------------------------------------------- worker


def _ignore_signal(signum, frame) -> None:
    """A Python-level "ignore" of a signal.

    Unlike SIG_IGN it is reset by exec, so PX4 still gets its launcher's SIGINT.
    """


def _exit_on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, _ignore_signal)  # one SIGTERM is enough; let the env close in peace
    raise SystemExit(128 + signum)


def _die_with_parent(sig: int) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (PR_SET_PDEATHSIG); no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # pragma: no cover - not glibc; the pipe's EOF still stops the worker
        pass


def _cmd_reset(env, state, seed=None, options=None):
    return env.reset(seed=seed, options=options)


def _cmd_step(env, state, action, autoreset=False):
    """Gymnasium's 5-tuple, or with ``autoreset`` SB3's ``(obs, reward, done, info, reset_info)``."""
    obs, reward, terminated, truncated, info = env.step(action)
    if not autoreset:
        return obs, reward, terminated, truncated, info
    done = terminated or truncated
    info["TimeLimit.truncated"] = truncated and not terminated
    reset_info: dict = {}
    if done:
        info["terminal_observation"] = obs
        obs, reset_info = env.reset()
    return obs, reward, done, info, reset_info


def _cmd_get_attr(env, state, name):
    return env.get_wrapper_attr(name)


def _cmd_set_attr(env, state, name, value):
    setattr(env, name, value)


def _cmd_env_method(env, state, name, args=(), kwargs=None):
    return env.get_wrapper_attr(name)(*args, **(kwargs or {}))


def _cmd_is_wrapped(env, state, wrapper_class):
    e = env
    while True:
        if isinstance(e, wrapper_class):
            return True
        inner = getattr(e, "env", None)
        if inner is None or inner is e:
            return False
        e = inner


def _cmd_run(env, state, fn, args=()):
    """``fn(env, state, *args)`` in the worker: ``state`` is a dict that lives as long as the worker."""
    return fn(env, state, *args)


_COMMANDS = {
    "reset": _cmd_reset,
    "step": _cmd_step,
    "get_attr": _cmd_get_attr,
    "set_attr": _cmd_set_attr,
    "env_method": _cmd_env_method,
    "is_wrapped": _cmd_is_wrapped,
    "run": _cmd_run,
}


def _describe_env(env) -> dict[str, Any]:
    base = getattr(env, "unwrapped", env)
    stack = getattr(base, "flight_stack", None)
    return {
        "observation_space": env.observation_space,
        "action_space": env.action_space,
        "flight_stack": getattr(stack, "value", stack),
        "flight_stack_label": getattr(base, "flight_stack_label", None),
        "px4_instance": getattr(getattr(getattr(base, "cfg", None), "px4", None), "instance", None),
        "pid": os.getpid(),
    }


def _error_payload(exc: BaseException) -> dict[str, Any]:
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
    except Exception:  # an exception that does not survive pickling travels as text
        blob = None
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": traceback.format_exc(),
        "exception": blob,
    }


def _worker_main(conn, env_fn_blob: bytes, parent_pid: int) -> None:
    """One worker: build the env, serve commands until told to close, then close the env (and its PX4)."""
    signal.signal(signal.SIGINT, _ignore_signal)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # close the env on SIGTERM (EnvPool.close, parent death)
    _die_with_parent(signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the line above
        return
    env = None
    state: dict[str, Any] = {}
    try:
        import cloudpickle

        env = cloudpickle.loads(env_fn_blob)()
        conn.send(("ok", _describe_env(env)))
        while True:
            try:
                cmd, args = conn.recv()
            except EOFError:  # the parent's end closed: it is gone
                break
            if cmd == "close":
                break
            try:
                result = _COMMANDS[cmd](env, state, *args)
            except Exception as exc:  # reported to the parent, which decides
                conn.send(("error", _error_payload(exc)))
            else:
                conn.send(("ok", result))
    except BaseException as exc:  # construction failed, SIGTERM (SystemExit) or a broken pipe
        if not isinstance(exc, (SystemExit, BrokenPipeError, EOFError)):
            try:
                conn.send(("error", _error_payload(exc)))
            except (OSError, ValueError):
                pass
    finally:
        if env is not None:
            try:
                env.close()
            except Exception:  # nothing left to report to
                log.exception("closing the env of worker %d", os.getpid())
        conn.close()


# --------------------------------------------------------------------------------------------- parent


@contextlib.contextmanager
def _parent_main_hidden():
    """Start a spawn worker without re-running the parent's ``__main__`` in it.

    "spawn" normally re-imports the parent's main script in every child, which needs an
    ``if __name__ == "__main__":`` guard there and costs an import. The workers need nothing from
    it (env factories and policies travel by value, with cloudpickle), so the main module's
    ``__spec__`` and ``__file__`` are hidden while ``Process.start`` records what to import.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {name: getattr(main, name) for name in ("__spec__", "__file__") if hasattr(main, name)}
    try:
        main.__spec__ = None
        if "__file__" in saved:
            del main.__file__
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


class EnvPool:
    """N single-drone envs, one per worker process, started and stopped together.

    Args:
        env_fns: one picklable (cloudpickle) ``() -> gym.Env`` per worker, e.g. from :func:`px4_env_fns`.
        names: one name per worker for messages (default ``"env worker j"``; :func:`px4_env_fns`
            pools are named after their PX4 instance by the callers).
        start_timeout_s: s, bound on building every env (PX4 start and connect included).
        close_timeout_s: s, how long :meth:`close` waits for the workers to close their envs
            (each PX4 stop takes at most ``PX4Cfg.timeout_s`` plus SIGKILL) before killing them.

    Attributes:
        num_envs: N.
        infos: per worker, a dict with ``observation_space``, ``action_space``, ``flight_stack``
            (``"px4"``/``"cascade"``), ``flight_stack_label``, ``px4_instance`` and ``pid``.

    Commands (:meth:`send` then :meth:`recv`, or :meth:`call`): ``"reset" (seed, options)``,
    ``"step" (action, autoreset)``, ``"get_attr" (name)``, ``"set_attr" (name, value)``,
    ``"env_method" (name, args, kwargs)``, ``"is_wrapped" (cls)`` and ``"run" (fn, args)``,
    which calls the importable function ``fn(env, state, *args)`` in the worker (``state``:
    a dict kept for the worker's lifetime).

    Raises:
        EnvWorkerError: a worker raised a non-flyby error (its traceback in the message), died
            or did not start in time. Flyby errors raised in a worker (``PX4Unavailable``,
            ``ConfigError``, ...) and ``AttributeError`` are re-raised as they are, with the
            worker's traceback as a note.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], Any]],
        *,
        names: Sequence[str] | None = None,
        start_timeout_s: float = 300.0,
        close_timeout_s: float = 30.0,
    ) -> None:
        import cloudpickle

        env_fns = list(env_fns)
        if not env_fns:
            raise ConfigError(["env_fns: no env factories given; pass at least one"])
        self.num_envs = len(env_fns)
        self.names = list(names) if names is not None else [f"env worker {j}" for j in range(self.num_envs)]
        if len(self.names) != self.num_envs:
            raise ValueError(f"names: {len(self.names)} names for {self.num_envs} env factories")
        self.close_timeout_s = float(close_timeout_s)
        self.closed = False
        self.infos: list[dict[str, Any]] = []
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self._busy: list[bool] = []
        ctx = mp.get_context("spawn")
        try:
            for j, fn in enumerate(env_fns):
                blob = cloudpickle.dumps(fn)
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker_main,
                    args=(child_end, blob, os.getpid()),
                    daemon=True,
                    name=f"flyby-{self.names[j].replace(' ', '-')}",
                )
                with _parent_main_hidden():
                    proc.start()
                child_end.close()
                self._procs.append(proc)
                self._conns.append(parent_end)
                self._busy.append(True)  # building its env
            deadline = time.monotonic() + float(start_timeout_s)
            self.infos = [self._recv(j, deadline=deadline, what="start") for j in range(self.num_envs)]
        except BaseException:
            self.close()
            raise
        self.observation_space = self.infos[0]["observation_space"]
        self.action_space = self.infos[0]["action_space"]

    # -- requests ---------------------------------------------------------------------------------

    @property
    def pids(self) -> list[int | None]:
        """Worker process ids."""
        return [p.pid for p in self._procs]

    def send(self, j: int, cmd: str, *args) -> None:
        """Send command ``cmd`` to worker ``j`` (answer with :meth:`recv`)."""
        self._check_open()
        if cmd not in _COMMANDS:
            raise ValueError(f"unknown worker command {cmd!r}; one of {', '.join(_COMMANDS)}")
        if self._busy[j]:
            raise RuntimeError(
                f"{self.names[j]} is still busy with its last command; recv() its answer first"
            )
        self._busy[j] = True
        try:
            self._conns[j].send((cmd, args))
        except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
            raise self._died(j, "taking a command") from exc

    def recv(self, j: int, timeout_s: float | None = None) -> Any:
        """Worker ``j``'s answer to its last command (waits; ``timeout_s`` bounds the wait, None = none)."""
        self._check_open()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        return self._recv(j, deadline=deadline, what="answer")

    def call(self, j: int, cmd: str, *args) -> Any:
        """:meth:`send` then :meth:`recv`."""
        self.send(j, cmd, *args)
        return self.recv(j)

    def broadcast(self, cmd: str, *args) -> list[Any]:
        """Send ``cmd`` to every worker at once, then collect the answers in worker order."""
        for j in range(self.num_envs):
            self.send(j, cmd, *args)
        return [self.recv(j) for j in range(self.num_envs)]

    def recv_any(self, workers: Iterable[int]) -> tuple[int, Any]:
        """The first answer from any of ``workers`` (busy ones): ``(worker index, answer)``."""
        self._check_open()
        workers = [j for j in workers if self._busy[j]]
        if not workers:
            raise RuntimeError("recv_any: none of the given workers has a command in flight")
        while True:
            for j in workers:
                if self._conns[j].poll():
                    return j, self._recv(j, deadline=None, what="answer")
            wait([self._conns[j] for j in workers] + [self._procs[j].sentinel for j in workers])
            for j in workers:
                if not self._conns[j].poll() and not self._procs[j].is_alive():
                    raise self._died(j, "working")

    def _recv(self, j: int, *, deadline: float | None, what: str) -> Any:
        conn, proc = self._conns[j], self._procs[j]
        while not conn.poll():
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait([conn, proc.sentinel], timeout)
            if not ready:
                raise EnvWorkerError(
                    f"{self.names[j]} (pid {proc.pid}) gave no {what} within the time bound; "
                    "it is stopped with the rest of the pool"
                )
            if conn in ready:
                break
            if not conn.poll():
                raise self._died(j, "starting" if what == "start" else "working")
        try:
            status, payload = conn.recv()
        except (EOFError, ConnectionResetError) as exc:
            raise self._died(j, "answering") from exc
        self._busy[j] = False
        if status == "error":
            raise self._worker_error(j, payload)
        return payload

    def _died(self, j: int, doing: str) -> EnvWorkerError:
        proc = self._procs[j]
        proc.join(1.0)
        code = proc.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        return EnvWorkerError(
            f"{self.names[j]} (pid {proc.pid}) {how} while {doing}; its PX4, if any, died with "
            "it (PR_SET_PDEATHSIG); the rest of the pool is stopped on close"
        )

    def _worker_error(self, j: int, payload: dict[str, Any]) -> BaseException:
        exc = None
        if payload.get("exception") is not None:
            try:
                exc = pickle.loads(payload["exception"])
            except Exception:  # fall back to the text
                exc = None
        where = f"in {self.names[j]} (pid {self._procs[j].pid}); worker traceback:\n{payload['traceback']}"
        if isinstance(exc, (FlybyError, AttributeError)):  # AttributeError: SB3's VecEnv API expects it
            if hasattr(exc, "add_note"):
                exc.add_note(where)
            return exc
        return EnvWorkerError(f"{self.names[j]} raised {payload['type']}: {payload['message']}\n{where}")

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("the env pool is closed; build a new one")

    # -- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every env and stop every worker (and so every PX4). Idempotent; safe after any failure.

        Idle workers are told to close; busy ones (mid-episode, mid-reset) get SIGTERM and close their
        env from there. Workers still alive after ``close_timeout_s`` are killed (their PX4s then die
        by PR_SET_PDEATHSIG). A Ctrl-C during the wait sends SIGTERM to all and waits again.
        """
        if self.closed:
            return
        self.closed = True
        for j, proc in enumerate(self._procs):
            if not proc.is_alive():
                continue
            if self._busy[j]:
                proc.terminate()
                continue
            try:
                self._conns[j].send(("close", ()))
            except (BrokenPipeError, ConnectionResetError, OSError):
                proc.terminate()
        try:
            self._join(self.close_timeout_s)
        except KeyboardInterrupt:
            for proc in self._procs:
                if proc.is_alive():
                    proc.terminate()
            self._join(self.close_timeout_s)
            raise
        finally:
            for conn in self._conns:
                conn.close()

    def _join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for sig_name in ("SIGTERM", "SIGKILL"):
            alive = [p for p in self._procs if p.is_alive()]
            if not alive:
                return
            log.warning(
                "env workers %s did not stop within %.0f s; sending %s",
                [p.pid for p in alive],
                timeout_s,
                sig_name,
            )
            for p in alive:
                if sig_name == "SIGTERM":
                    p.terminate()
                else:
                    p.kill()
            for p in alive:
                p.join(10.0)

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
