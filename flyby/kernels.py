"""Which implementation runs the hot path: the numpy reference or the numba-compiled kernels.

``FLYBY_KERNEL`` selects it, read on every call of :func:`kernel_backend` (so a test or a user can
switch it for one process without reimporting anything):

- ``numba`` (the default): compiled kernels, the same results as the reference: the direct
  dynamics (:mod:`flyby.dynamics.direct_kernel`, bit for bit), ground-truth detection
  (:mod:`flyby.perception.gt_kernel`, within float64 rounding), and the ISR task's step in three
  calls (:mod:`flyby.mdp.kernels`: ``perceive_into`` for camera poses, detection and coverage;
  ``dones_rewards_into``; ``observe_into``), states, rewards and dones bit for bit,
  observations within the float32 rounding of a detection box (``tests/envs/test_isr_kernels.py``);
  and the full-fidelity env's cascade and rotors, one call per physics step
  (:func:`flyby.control.cascade_kernel.cascade_rotors_into`, within rounding of the reference:
  ``tests/dynamics/test_flight_stack_motion.py``).
  A user's own reward or termination term runs the reference's dones and rewards; a user's
  observation term runs beside the compiled observation; the full-fidelity env's tilted cameras
  take the reference's perception step.
- ``numpy``: the readable reference implementation, the one the kernels are tested against.

Training is deterministic, so the two paths train different policies from one seed (a rounding
difference in one detection box is enough). The Phase 4 gate is validated on ``numba``: its
quick configuration (4M env steps) trained a policy at +63.9 [+61.1, +66.6] return and 33.1
targets per episode against patrol's +54.0 [+47.6, +60.4] and 30.8 (2026-12-07).

Compiled code is cached on disk (``cache=True``) in ``$NUMBA_CACHE_DIR`` when set, else in a
``kernels-<digest>`` folder (:func:`kernel_source_digest`: one per version of the kernels' source)
in the checkout's ``.cache/numba`` (where the repository's ``.cache/`` already holds PX4), else in
``$XDG_CACHE_HOME/flyby/numba`` (``~/.cache/...``), else under the system temp dir
(:func:`flyby.utils.cache.writable_cache_dir`, the rule ultralytics' settings folder follows too). The first
call of a kernel in a fresh cache compiles it (seconds; ``flyby bench`` prints the cold start),
every later process loads it.
"""

from __future__ import annotations

import os
from pathlib import Path

from flyby.enums import KernelBackend
from flyby.errors import ConfigError
from flyby.utils.cache import writable_cache_dir

__all__ = [
    "KERNEL_ENV",
    "PARALLEL_ENV",
    "configure_numba_cache",
    "kernel_backend",
    "kernel_source_digest",
    "numba_cache_dir",
    "parallel_min_drones",
]

KERNEL_ENV = "FLYBY_KERNEL"
PARALLEL_ENV = "FLYBY_PARALLEL_MIN_DRONES"
_PARALLEL_MIN_DRONES = 64
_BACKENDS: dict[str | None, KernelBackend] = {}  # $FLYBY_KERNEL values seen -> their backend
_DIGEST: str | None = None  # kernel_source_digest(), computed once per process


def parallel_min_drones() -> int:
    """Drone count from which the compiled step splits its per-drone loops over numba's threads.

    ``$FLYBY_PARALLEL_MIN_DRONES`` overrides the default of 64 (a very large value keeps every
    step serial). Below it, two threads gain nothing: waking the pool costs about what the work
    saves (``benchmarks/bench_parallel.py`` on the 2-core machine, drone-steps/s one thread ->
    split: 32 drones 162,446 -> 166,480; 64: 195,341 -> 228,248; 1,024: 236,381 -> 323,200).
    The threads are numba's (its OpenMP or TBB layer where installed, else its workqueue, which
    two Python threads must not enter at once); ``$NUMBA_NUM_THREADS`` sets how many.

    Raises:
        ConfigError: the variable is set but not a positive integer.
    """
    value = os.environ.get(PARALLEL_ENV, "").strip()
    if not value:
        return _PARALLEL_MIN_DRONES
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(
            f"{PARALLEL_ENV}={os.environ[PARALLEL_ENV]!r} is not a positive integer; set a drone count "
            f"(e.g. 64) or unset it for the default {_PARALLEL_MIN_DRONES}"
        )
    return count


def kernel_backend() -> KernelBackend:
    """The kernel implementation selected by ``$FLYBY_KERNEL`` (default :attr:`KernelBackend.NUMBA`).

    Raises:
        ConfigError: ``$FLYBY_KERNEL`` is set to something else; the message names the value and
            the accepted ones.
    """
    raw = os.environ.get(KERNEL_ENV)
    known = _BACKENDS.get(raw)  # read once per step: skip the parsing of a value seen before
    if known is not None:
        return known
    value = (raw or "").strip().lower()
    if not value:
        return _BACKENDS.setdefault(raw, KernelBackend.NUMBA)
    try:
        return _BACKENDS.setdefault(raw, KernelBackend(value))
    except ValueError:
        accepted = ", ".join(k.value for k in KernelBackend)
        raise ConfigError(
            f"{KERNEL_ENV}={os.environ[KERNEL_ENV]!r} is not a kernel; set it to one of {accepted} "
            f"(or unset it for {KernelBackend.NUMBA.value})"
        ) from None


def numba_cache_dir() -> Path:
    """Where numba caches compiled kernels (see the module docstring); created if missing.

    Raises:
        FlybyError: no candidate folder can be written (the message names ``NUMBA_CACHE_DIR``).
    """
    return writable_cache_dir("numba", "NUMBA_CACHE_DIR")


def kernel_source_digest() -> str:
    """12 hex digits of SHA-256 over the source of every flyby module the compiled kernels depend on.

    numba's cache checks only the timestamp of the file that defines a cached function, not of the
    functions and constants it calls from other files (numba's documented limitation): after a
    change to ``flyby/dynamics/multirotor_kernel.py`` alone, ``cascade_rotors_into`` in
    ``flyby/control/cascade_kernel.py`` would load its old machine code. So the default cache folder
    is named by this digest, over every module of the package that mentions numba plus
    :mod:`flyby.geometry` (whose functions and constants the kernels compile in); a new flyby
    compiles afresh in a new folder (numba's own index already checks its version).
    """
    global _DIGEST
    if _DIGEST is None:
        _DIGEST = _source_digest(Path(__file__).resolve().parent)
    return _DIGEST


def _source_digest(package: Path) -> str:
    """:func:`kernel_source_digest` of the package folder ``package``."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        text = path.read_bytes()
        if b"numba" in text or path.relative_to(package).as_posix() == "geometry.py":
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + text)
    return digest.hexdigest()[:12]


def configure_numba_cache() -> None:
    """Point numba's cache at ``numba_cache_dir() / "kernels-<digest>"`` (:func:`kernel_source_digest`),
    unless ``$NUMBA_CACHE_DIR`` is set (then that folder, as it is: clear it after changing flyby's
    kernels). Must run before numba is first imported."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        os.environ["NUMBA_CACHE_DIR"] = str(numba_cache_dir() / f"kernels-{kernel_source_digest()}")
