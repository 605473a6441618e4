"""Turn Hydra's composition errors into one line that names the key, the value and the choices.

Used by all three commands (``python -m harness``, ``kernels``, ``analysis``). ``@hydra.main`` prints multi-line errors (and lists our ``*_schema`` entries as if they were
choices). Before handing over to Hydra, the overrides are composed here (for a sweep, every
swept value once); the first problem is reported in one line and the process exits 2 without
creating a run folder. A static typo thus stops a sweep before any job runs, while a value
that only the run can judge (``scale=-1``) fails its own job, recorded, and the sweep goes on.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

#: The repository's conf/ folder, which every command composes from.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


MULTIRUN_FLAGS = ("-m", "--multirun")


def _user_overrides(args: list[str]) -> Optional[list[str]]:
    """The config overrides among ``args``; None when other Hydra flags are present (Hydra handles those)."""
    args = [a for a in args if a not in MULTIRUN_FLAGS]
    if any(a.startswith("-") for a in args):
        return None
    return [a for a in args if not a.lstrip("+~").startswith("hydra.") and not a.lstrip("+~").startswith("hydra/")]


def _variants(overrides: list[str]) -> list[list[str]]:
    """For a sweep, each value of each swept key once (others at their first value): every value
    a job will see gets composed, in linear rather than combinatorial time."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    firsts, values = [], []
    for text, ov in zip(overrides, parsed):
        if ov.is_sweep_override():
            options = [f"{ov.get_key_element()}={v}" for v in ov.sweep_string_iterator()]
        else:
            options = [text]
        firsts.append(options[0])
        values.append(options)
    variants = [firsts]
    for i, options in enumerate(values):
        for option in options[1:]:
            variants.append(firsts[:i] + [option] + firsts[i + 1 :])
    return variants


def _choices(group: str) -> list[str]:
    from hydra.core.global_hydra import GlobalHydra

    options = GlobalHydra.instance().config_loader().get_group_options(group)
    return sorted(o for o in options if not o.endswith("_schema"))


def _keys_of(config_name: str, parent: str) -> list[str]:
    from hydra import compose
    from omegaconf import OmegaConf

    node = compose(config_name, overrides=[])
    node = OmegaConf.select(node, parent) if parent else node
    return sorted(node.keys()) if node is not None and OmegaConf.is_dict(node) else []


def explain(exc: Exception, config_name: str) -> str:
    """One line for a Hydra/OmegaConf composition error of ``config_name``."""
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
        return f"{key!r} is not a config key; valid keys of {where}: {', '.join(_keys_of(config_name, parent))}"
    if isinstance(exc, ConfigCompositionException) and isinstance(cause, ValidationError):
        return f"{cause.full_key}: {str(cause.msg).splitlines()[0]}"
    return " ".join(str(exc).split())


def precheck(args: list[str], config_name: str) -> Optional[str]:
    """Compose ``args`` onto ``config_name`` as Hydra would; the one-line error, or None when fine."""
    overrides = _user_overrides(args)
    if overrides is None:
        return None
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            for variant in _variants(overrides):
                compose(config_name, overrides=variant)
        except Exception as exc:  # any composition failure is the user's input
            return explain(exc, config_name)
    return None


def exit_on_bad_overrides(config_name: str, args: Optional[list[str]] = None) -> None:
    """Call before a ``@hydra.main`` function: a bad override prints ``error: ...`` and exits 2."""
    problem = precheck(sys.argv[1:] if args is None else args, config_name)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
