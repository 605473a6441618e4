"""Turn Hydra's composition errors into one line that names the key, the value and the choices.

``@hydra.main`` prints multi-line errors (and lists our ``*_schema`` entries as if they were
choices). Before handing over to Hydra, a single run's overrides are composed once here; the
first problem is reported in one line and the process exits 2 without creating a run folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
CONFIG_NAME = "config"


def _user_overrides(args: list[str]) -> Optional[list[str]]:
    """The config overrides among ``args``; None when Hydra flags are present (let Hydra handle them)."""
    if any(a.startswith("-") for a in args):
        return None
    return [a for a in args if not a.lstrip("+~").startswith("hydra.") and not a.lstrip("+~").startswith("hydra/")]


def _choices(group: str) -> list[str]:
    from hydra.core.global_hydra import GlobalHydra

    options = GlobalHydra.instance().config_loader().get_group_options(group)
    return sorted(o for o in options if not o.endswith("_schema"))


def _keys_of(parent: str) -> list[str]:
    from hydra import compose
    from omegaconf import OmegaConf

    node = compose(CONFIG_NAME, overrides=[])
    node = OmegaConf.select(node, parent) if parent else node
    return sorted(node.keys()) if node is not None and OmegaConf.is_dict(node) else []


def explain(exc: Exception) -> str:
    """One line for a Hydra/OmegaConf composition error."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and "/" in exc.missing_cfg_file:
        group, name = exc.missing_cfg_file.rsplit("/", 1)
        return f"{group}={name!r} is unknown; valid choices: {', '.join(_choices(group))}"
    if isinstance(exc, OverrideParseException):
        return f"cannot parse override {exc.override!r}: {str(exc.message).splitlines()[0]}"
    cause = exc.__cause__
    if isinstance(exc, ConfigCompositionException) and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        key = cause.full_key or ""
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        where = parent or "the top level"
        return f"{key!r} is not a config key; valid keys of {where}: {', '.join(_keys_of(parent))}"
    if isinstance(exc, ConfigCompositionException) and isinstance(cause, ValidationError):
        return f"{cause.full_key}: {str(cause.msg).splitlines()[0]}"
    return " ".join(str(exc).split())


def precheck(args: list[str]) -> Optional[str]:
    """Compose ``args`` the way a single run would; the one-line error, or None when fine."""
    overrides = _user_overrides(args)
    if overrides is None:
        return None
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            compose(CONFIG_NAME, overrides=overrides)
        except Exception as exc:  # any composition failure is the user's input
            return explain(exc)
    return None
