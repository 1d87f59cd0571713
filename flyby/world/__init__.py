"""The backend-neutral ISR world (roads, buildings, targets)."""

from flyby.world.world import TARGET_SIZE_M, ISRWorld, WorldCfg, generate_world

__all__ = ["ISRWorld", "WorldCfg", "generate_world", "TARGET_SIZE_M"]
