"""Typed configuration: every config dataclass, its YAML loader, and the packaged YAML files.

The machinery (:mod:`flyby.config.core`): ``@dataclass(kw_only=True)`` configs whose fields
declare bounds with :func:`cfg_field`; :func:`from_dict` / :func:`load_yaml` turn parsed YAML
into them and raise one :class:`~flyby.errors.ConfigError` listing *every* problem by dotted path.

The configs the envs, training and evaluation share, one module each, imported by all of them
(the envs never import :mod:`flyby.training`):

- :mod:`flyby.config.dynamics`: the direct dynamics model (``dynamics_config.yaml``; only what
  ``flyby tune`` fits and the domain randomization noise);
- :mod:`flyby.config.envs`: the ISR env configs (direct, multi-drone, PX4);
- :mod:`flyby.config.training`: ``training_config.yaml`` (training envs + ``training:``);
- :mod:`flyby.config.evaluation`: ``evaluation_config.yaml`` (the PX4 env + the protocol).

Component configs (camera, world, rewards, cascade gains, ...) live beside their components
and are gathered by these. The action definition is :class:`flyby.mdp.actions.ActionCfg`.

Example::

    from flyby.config.training import load_training_cfg
    cfg = load_training_cfg()                         # the packaged training_config.yaml
    cfg = load_training_cfg("/path/to/my.yaml")       # or any path
"""

from flyby.config.core import (
    cfg_field,
    cfg_hash,
    check,
    from_dict,
    load_yaml,
    packaged_config_path,
    read_yaml,
    to_dict,
)

__all__ = [
    "cfg_field",
    "cfg_hash",
    "check",
    "from_dict",
    "load_yaml",
    "packaged_config_path",
    "read_yaml",
    "to_dict",
]
