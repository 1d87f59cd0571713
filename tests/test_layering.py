"""Imports follow the data flow: configs and the simulation layers never import what is built on them.

``flyby.config`` is imported by envs and training alike; the envs, the MDP terms, the dynamics and
the simulator never import ``flyby.training``, ``flyby.pipeline`` or the CLI (which would drag SB3
and torch into an env and turn the dependency the wrong way round).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FLYBY = Path(__file__).resolve().parents[1] / "flyby"
# package below -> packages it must never import
LOWER = (
    "config",
    "envs",
    "mdp",
    "dynamics",
    "sim",
    "world",
    "perception",
    "control",
    "sensors",
    "px4",
    "utils",
)
UPPER = ("flyby.training", "flyby.pipeline", "flyby.cli")


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, lazy ones inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_scanner_sees_top_level_and_lazy_imports():
    source = "import flyby.training.train\ndef f():\n    from flyby.pipeline.run import x\n"
    assert imported_modules(source) == {"flyby.training.train", "flyby.pipeline.run"}


@pytest.mark.parametrize("package", LOWER)
def test_lower_layers_do_not_import_training_pipeline_or_cli(package):
    offenders = []
    for path in sorted((FLYBY / package).rglob("*.py")):
        for name in imported_modules(path.read_text()):
            if any(name == up or name.startswith(up + ".") for up in UPPER):
                offenders.append(f"{path.relative_to(FLYBY.parent)} imports {name}")
    assert not offenders, "imports against the data flow:\n" + "\n".join(offenders)


def test_every_config_dataclass_lives_in_the_config_package_or_beside_its_component():
    """The env, dynamics, training and evaluation configs are in flyby/config, nowhere else."""
    wanted = {
        "ISREnvCfg",
        "DirectEnvCfg",
        "MultiDroneEnvCfg",
        "PX4EnvCfg",
        "DirectDynamicsCfg",
        "TrainingCfg",
        "TrainerCfg",
        "EvaluationCfg",
    }
    where: dict[str, list[str]] = {}
    for path in sorted(FLYBY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name in wanted:
                where.setdefault(node.name, []).append(str(path.relative_to(FLYBY)))
    assert set(where) == wanted
    assert all(len(files) == 1 and files[0].startswith("config/") for files in where.values()), where
