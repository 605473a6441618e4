"""Turn Hydra's composition errors into one line that names the key, the value and the choices.

Used by all three commands (``python -m harness``, ``kernels``, ``analysis``). ``@hydra.main`` prints multi-line errors (and lists our ``*_schema`` entries as if they were
choices). Before handing over to Hydra, the overrides are composed here (for a sweep, every
swept value once); the first problem is reported in one line and the process exits 2 without
creating a run folder. A static typo thus stops a sweep before any job runs, while a value
that only the run can judge (``scale=-1``) fails its own job, recorded, and the sweep goes on.

Beyond what Hydra itself rejects, the pre-check also refuses:

- an unknown option of an ``optional`` config group (``experiment=fmnist_width_swep``), which
  Hydra skips silently, so the default ran as if the misspelled experiment had been applied;
- a ``+key=value`` that adds a key to a typed (dataclass-backed) node, which Hydra accepts and
  the run then ignores (``+trainer.lrr=5``). ``++key=value`` on a key the schema has is an
  ordinary override and stays allowed;
- an override Hydra cannot parse (``~``, ``=``, non-ASCII characters, ...), with the exact
  quoting that works, for ``hydra.*`` overrides too.

Configs: ``conf/<command>/`` holds each command's own config tree (``conf/harness/config.yaml``
and its groups, ``conf/kernels/kernels.yaml``, ``conf/analysis/analysis.yaml``), so each
command's ``--help`` lists only its own groups. The folder is found next to this package, so
it is the checkout's ``conf/`` when run from the checkout (or an editable install) and the
installed ``conf`` package data after ``pip install .``: code and configs always come from the
same tree.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable, Optional

#: The ``conf/`` folder beside this package: the checkout's, or the installed package data.
CONF_ROOT = Path(__file__).resolve().parents[1] / "conf"

#: Each command's root config name in its folder ``conf/<command>/``.
CONFIG_NAMES = {"harness": "config", "kernels": "kernels", "analysis": "analysis", "audit": "audit"}


def conf_dir(command: str) -> Path:
    """The config folder of ``python -m <command>`` (``harness``, ``kernels`` or ``analysis``)."""
    if command not in CONFIG_NAMES:
        raise ValueError(f"command={command!r} has no config folder; valid: {', '.join(CONFIG_NAMES)}")
    return CONF_ROOT / command


#: The harness's config folder (``harness/rundir.py`` composes the run's folders from it).
CONF_DIR = conf_dir("harness")

MULTIRUN_FLAGS = ("-m", "--multirun")

#: Characters Hydra 1.3's override grammar accepts in a value only inside quotes (found by
#: parsing ``a=x<c>y`` for every printable ASCII character); any non-ASCII character too.
NEEDS_QUOTES = set("!\"#&'();<=>[]^`{}~")


def _command_of(config_name: str) -> str:
    for command, name in CONFIG_NAMES.items():
        if name == config_name:
            return command
    raise ValueError(f"config_name={config_name!r} is not a command's root config; valid: {', '.join(CONFIG_NAMES.values())}")


def _is_hydra_key(override: str) -> bool:
    key = override.lstrip("+~")
    return key.startswith("hydra.") or key.startswith("hydra/")


def _split_args(args: list[str]) -> Optional[list[str]]:
    """Every override among ``args`` (``hydra.*`` ones included), or None when Hydra's own flags
    make this run something else (``--help``, ``--info``, another config, shell completion)."""
    from hydra._internal.utils import get_args_parser

    try:
        parsed, unknown = get_args_parser().parse_known_args(args)
    except SystemExit:  # argparse's own usage error: Hydra reports it the same way
        return None
    if unknown or parsed.help or parsed.hydra_help or parsed.info or parsed.shell_completion:
        return None
    if parsed.config_name or parsed.config_dir or parsed.config_path or parsed.experimental_rerun:
        return None
    return list(parsed.overrides)


def _user_overrides(args: list[str]) -> Optional[list[str]]:
    """The config overrides among ``args`` (``hydra.*`` left to Hydra); None when other Hydra flags are present."""
    overrides = _split_args(args)
    if overrides is None:
        return None
    return [a for a in overrides if not _is_hydra_key(a)]


def shell_quoted(override: str) -> str:
    """How to type ``override`` in a POSIX shell so that Hydra reads its value as one quoted string.

    Hydra's quotes go inside the shell's: ``"data.root='~/data/cifar10'"``. The shell removes
    its own quotes, so ``data.root='~/x'`` alone reaches Hydra unquoted.
    """
    import shlex

    key, _, value = override.partition("=")
    if "'" not in value:
        hydra_text = f"{key}='{value}'"
    elif '"' not in value:
        hydra_text = f'{key}="{value}"'
    else:
        hydra_text = f"{key}='{value.replace(chr(92), chr(92) * 2).replace(chr(39), chr(92) + chr(39))}'"
    if not any(c in hydra_text for c in '"$`\\!'):
        return f'"{hydra_text}"'
    return shlex.quote(hydra_text)


def _needs_quotes(value: str) -> bool:
    return any(c in NEEDS_QUOTES or not c.isascii() for c in value.strip())


def parse_problem(override: str, message: str) -> str:
    """One line for an override Hydra's grammar rejects, with the quoting that works where quoting helps."""
    first = str(message).splitlines()[0] if str(message).strip() else "syntax error"
    key, sep, value = override.partition("=")
    if not sep or value.lstrip().startswith(("[", "{", "'", '"')) or not _needs_quotes(value):
        return f"cannot parse override {override!r}: {first}"
    home = _home_form(key, value)
    if home:
        return (f"cannot parse override {override!r}: Hydra reads ~ only inside quotes and never expands it; "
                f"type it as {home} (the shell expands $HOME)")
    return (f"cannot parse override {override!r}: Hydra reads ~, =, quotes, brackets and non-ASCII characters "
            f"in a value only inside quotes; type it as {shell_quoted(override)} (Hydra's quotes inside the shell's)")


def _home_form(key: str, value: str) -> Optional[str]:
    """``key=~/rest`` as the shell should get it with ``$HOME`` for ``~`` (Hydra keeps a quoted
    ``~`` literally, and only some keys expand it later), or None where that is not simple."""
    if not (value == "~" or value.startswith("~/")):
        return None
    rest = value[1:]
    if any(c in '"$`\\\'!' for c in rest):
        return None
    if not _needs_quotes(rest) and " " not in rest and "," not in rest:
        return f"{key}=$HOME{rest}"
    return f"\"{key}='$HOME{rest}'\""


def split_value(overrides: list[str], i: int) -> Optional[str]:
    """One line when ``overrides[i]``, a word without ``=``, is the rest of the value before it:
    a path with spaces the shell split in two (``data.root=/my data`` -> ``data.root=/my``, ``data``)."""
    text = overrides[i]
    if "=" in text or text.startswith("~") or i == 0 or "=" not in overrides[i - 1]:
        return None
    start = i - 1
    end = i
    while end + 1 < len(overrides) and "=" not in overrides[end + 1]:
        end += 1
    joined = " ".join(overrides[start : end + 1])
    return (f"cannot parse override {text!r}: it has no '=', so the value before it ({overrides[start]!r}) "
            f"was split at a space by the shell; type it as {shell_quoted(joined)} (Hydra's quotes inside the shell's)")


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


def _loader() -> Any:
    from hydra.core.global_hydra import GlobalHydra

    return GlobalHydra.instance().config_loader()


def _choices(group: str) -> list[str]:
    options = _loader().get_group_options(group)
    return sorted(o for o in options if not o.endswith("_schema"))


def _keys_of(config_name: str, parent: str) -> list[str]:
    from hydra import compose
    from omegaconf import OmegaConf

    node = compose(config_name, overrides=[])
    node = OmegaConf.select(node, parent) if parent else node
    return sorted(node.keys()) if node is not None and OmegaConf.is_dict(node) else []


def _unknown_group_option(override: Any) -> Optional[str]:
    """One line when a group override names an option the group lacks (Hydra skips it for an
    ``optional`` group, silently), else None."""
    if override.is_delete():
        return None
    group = override.key_or_group
    if not _loader().repository.group_exists(group):
        return None
    value = override.value()
    names = value if isinstance(value, list) else [value]
    valid = _choices(group)
    for name in names:
        if name is None:  # group=null: no option, as `optional group: null` in the defaults
            continue
        if str(name) not in valid:
            return f"{group}={name!r} is unknown; valid choices: {', '.join(valid)}"
    return None


def _typed_fields(node: Any) -> Optional[list[str]]:
    """The field names of a dataclass-backed node, or None for an untyped one."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(node, DictConfig):
        return None
    kind = OmegaConf.get_type(node)
    if kind is None or not dataclasses.is_dataclass(kind):
        return None
    return sorted(f.name for f in dataclasses.fields(kind))


def _added_to_typed_node(cfg: Any, override: Any) -> Optional[str]:
    """One line when ``+key=value`` adds ``key`` to a typed node that has no such field, else None.

    Hydra adds it (its ``+`` opens the struct flag) and the run ignores it, silently.
    """
    from omegaconf import DictConfig

    if not override.is_add() and not override.is_force_add():
        return None
    key = override.key_or_group
    if _loader().repository.group_exists(key) or "/" in key:
        return None
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = _typed_fields(node)
        if fields is not None and part not in fields:
            where = ".".join(parts[:i]) or "the top level"
            return (f"{'.'.join(parts[: i + 1])!r} is not a config key; valid keys of {where}: {', '.join(fields)} "
                    "(a leading + cannot add keys to a typed config)")
        node = node.get(part) if isinstance(node, DictConfig) else None
        if node is None:
            return None
    return None


#: ``optional <group>@_global_: ${<choice>}_${<picker>}`` entries: a picker other than "none" must
#: find its file (Hydra skips a missing optional one silently). harness: preset=tiny picks
#: workload_preset/<workload>_tiny.yaml.
SPECIALISATIONS = {"workload_preset": ("workload", "preset")}


def _missing_specialisation(choices: Any) -> Optional[str]:
    """One line when a picked specialisation (``preset=tiny``) has no file for the current choice."""
    for group, (choice, picker) in SPECIALISATIONS.items():
        picked = choices.get(picker)
        if picked in (None, "none") or choice not in choices:
            continue
        wanted = f"{choices[choice]}_{picked}"
        have = _choices(group)
        if wanted not in have:
            with_it = sorted(o[: -len(picked) - 1] for o in have if o.endswith(f"_{picked}"))
            return (f"{picker}={picked} has no file for {choice}={choices[choice]} ({group}/{wanted}.yaml); "
                    f"{picker}={picked} exists for: {', '.join(with_it) or 'none'}")
    return None


def explain(exc: Exception, config_name: str) -> str:
    """One line for a Hydra/OmegaConf composition error of ``config_name``."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and "/" in exc.missing_cfg_file:
        group, name = exc.missing_cfg_file.rsplit("/", 1)
        return f"{group}={name!r} is unknown; valid choices: {', '.join(_choices(group))}"
    if isinstance(exc, OverrideParseException):
        return parse_problem(exc.override, exc.message)
    cause = exc.__cause__
    if isinstance(exc, ConfigCompositionException) and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        key = cause.full_key or ""
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        where = parent or "the top level"
        return f"{key!r} is not a config key; valid keys of {where}: {', '.join(_keys_of(config_name, parent))}"
    if isinstance(exc, ConfigCompositionException) and isinstance(cause, ValidationError):
        return f"{cause.full_key}: {str(cause.msg).splitlines()[0]}"
    if isinstance(exc, ConfigCompositionException) and str(exc).startswith("Ambiguous value for argument"):
        first = str(exc).splitlines()[0]
        text = first[first.index("'") + 1 : first.rindex("'")] if first.count("'") >= 2 else first
        key, _, value = text.partition("=")
        return (f"{text!r} has a comma: for a string type it as {shell_quoted(text)}, for a list "
                f"{key}=[{value}], for a sweep add -m")
    return " ".join(str(exc).split())


def precheck(args: list[str], config_name: str, config_dir: Optional[Path] = None) -> Optional[str]:
    """Compose ``args`` onto ``config_name`` as Hydra would; the one-line error, or None when fine.

    Args:
        args: The command line after the program name.
        config_name: The command's root config (``config``, ``kernels`` or ``analysis``).
        config_dir: Where it lives; default its command's folder, ``conf/<command>/``.
    """
    overrides = _split_args(args)
    if overrides is None:
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for i, text in enumerate(overrides):  # hydra.run.dir=... included: a bad one would fail in Hydra, multi-line
        try:
            parser.parse_overrides([text])
        except OverrideParseException as exc:
            split = split_value(overrides, i)
            return split or parse_problem(text, exc.message)
    overrides = [a for a in overrides if not _is_hydra_key(a)]
    from hydra import compose, initialize_config_dir

    folder = config_dir if config_dir is not None else conf_dir(_command_of(config_name))
    if not (Path(folder) / f"{config_name}.yaml").is_file():  # an install without its package data
        return (f"config {config_name}.yaml not found in {folder}: the configs ship with the package; "
                "reinstall it (pip install .) or run from the checkout")
    multirun = any(a in MULTIRUN_FLAGS for a in args)
    with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
        try:  # a single run composes its overrides as given: Hydra refuses a sweep there (a comma)
            for variant in _variants(overrides) if multirun else [overrides]:
                parsed = parser.parse_overrides(variant)
                for ov in parsed:
                    problem = _unknown_group_option(ov)
                    if problem:
                        return problem
                cfg = compose(config_name, overrides=variant, return_hydra_config=True)
                problem = _missing_specialisation(cfg.hydra.runtime.choices)
                if problem:
                    return problem
                for ov in parsed:
                    problem = _added_to_typed_node(cfg, ov)
                    if problem:
                        return problem
        except Exception as exc:  # any composition failure is the user's input
            return explain(exc, config_name)
    return None


def exit_on_bad_overrides(config_name: str, args: Optional[list[str]] = None) -> None:
    """Call before a ``@hydra.main`` function: a bad override prints ``error: ...`` and exits 2."""
    problem = precheck(sys.argv[1:] if args is None else args, config_name)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)


def run_pipeline(run: Callable[[Any], Any], cfg: Any, user_errors: tuple[type[BaseException], ...]) -> Any:
    """A command's pipeline run for its CLI: a user error prints one ``error:`` line and exits 2;
    Ctrl-C says what it leaves (outputs are written last, each atomically: whole files only) and
    exits 130 (128 + SIGINT, the shell's convention)."""
    try:
        return run(cfg)
    except user_errors as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C): outputs not written, or only some of them, each whole", file=sys.stderr)
        sys.exit(130)
