"""flyby: faster-than-real-time RL training for ISR drones, with video evidence.

Importing flyby registers its Gymnasium envs by string entry point and imports
no simulator (MuJoCo, Isaac Sim and PX4 load only when a backend is built):

    import gymnasium as gym
    import flyby  # noqa: F401

    env = gym.make("flyby/DirectISR-v0")
    full = gym.make("flyby/PX4ISR-v0", flight_stack="auto")  # PX4 SITL when found, else the cascade
    venv = gym.make_vec("flyby/MultiDroneISR-v0", num_envs=16, vectorization_mode="vector_entry_point")
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

ENV_IDS = ("flyby/DirectISR-v0", "flyby/MultiDroneISR-v0", "flyby/PX4ISR-v0")
SINGLE_ENV_IDS = ("flyby/DirectISR-v0", "flyby/PX4ISR-v0")

if "flyby/DirectISR-v0" not in registry:
    register(id="flyby/DirectISR-v0", entry_point="flyby.envs.direct_env:DirectISREnv")
if "flyby/PX4ISR-v0" not in registry:
    register(id="flyby/PX4ISR-v0", entry_point="flyby.envs.px4_env:PX4ISREnv")
if "flyby/MultiDroneISR-v0" not in registry:
    register(
        id="flyby/MultiDroneISR-v0",
        vector_entry_point="flyby.envs.multi_drone_env:MultiDroneISREnv",
    )
