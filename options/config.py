"""YAML presets for argparse parsers, and the resolved config written next to a run.

Precedence: the parser's defaults < the ``--config`` YAML file < the command line. A preset is a flat mapping of flag
names (argparse ``dest``, e.g. ``batch_size``) to values. Every value goes through its flag's ``type`` and
``choices`` exactly as if it had been typed on the command line, because PyYAML reads ``1e-4`` as the *string*
``"1e-4"`` (YAML 1.1 wants a dot in floats) and would otherwise leak strings into the optimizer; a text flag reads a
plain value as written (YAML 1.1 reads ``no`` as False), and so does a number flag a plain integer (YAML 1.1 reads
``0042`` as octal 34 and ``1:00`` as 60). Unknown keys are an error, with close matches suggested, so a
typo never silently falls back to the default, and so is a key given twice (PyYAML would keep the last).

A saved ``opt.yaml`` is itself a valid preset for the same script; its ``config`` entry records the preset the run
was started from, and stays the record of a run resumed with ``--config <run>/opt.yaml`` (the file read is kept apart,
for error messages: ``preset_file``).
"""

from __future__ import annotations

import argparse
import difflib
import enum
import math
import os
import sys
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import yaml

from utils.atomic_io import atomic_write
from utils.launch_env import is_first_process
from utils.run_dir import CONFIG_NAME


class ConfigError(ValueError):
    """A YAML preset that does not fit the parser."""


_DEFAULT_SUFFIX = " (default: %(default)s)"


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with "(default: X)" where it tells something: not after a help text that already says its default,
    nor for defaults that mean "not given" (None, False, an empty string)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == ""  # (0 is a value)
        if unset and text.endswith(_DEFAULT_SUFFIX):  # appended by Python 3.10's BooleanOptionalAction itself
            return text[:-len(_DEFAULT_SUFFIX)]
        if "default" in text.lower() or unset or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _actions_by_dest(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The flag that reads each destination's preset value: the first one added, not a later shortcut to the same
    destination (``--gumbel_sample`` sets ``sampling`` to a constant and takes no value; ``--no_mm``)."""
    actions: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.dest not in (argparse.SUPPRESS, "help") and action.option_strings:
            actions.setdefault(action.dest, action)
    return actions


def _is_flag(action: argparse.Action) -> bool:
    """store_true / store_false / store_const of a bool / --x/--no-x: the value is a boolean, not parsed text."""
    return isinstance(action, argparse.BooleanOptionalAction) or (action.nargs == 0 and isinstance(action.const, bool))


def add_off_switch(group: argparse._ActionsContainer, flag: str, help: str) -> None:
    """``--no_<x>`` (store_true, key ``no_<x>``) and its twin ``--<x>``, which sets the same key back to False, so
    that a ``--config`` preset's ``no_<x>: true`` can be undone on the command line (``--no-no_<x>`` would read
    badly). A preset still spells the key ``no_<x>``: the first flag of a key reads its preset value."""
    if not flag.startswith("--no_"):
        raise ValueError(f"add_off_switch: expected a --no_<x> flag, got {flag!r}")
    dest = flag[2:]
    group.add_argument(flag, action="store_true", help=help)
    group.add_argument("--" + dest[3:], dest=dest, action="store_false", default=argparse.SUPPRESS,
                       help=f"the default: undoes {flag} (a --config preset's {dest}: true)")


def _cast_one(value: Any, action: argparse.Action, where: str) -> Any:
    """Cast one YAML scalar through ``action.type`` (as argparse would cast the command-line text)."""
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{where}: expected a single value, got {type(value).__name__} {value!r}")
    kind = action.type
    if kind is None:
        cast = value if isinstance(value, str) else str(value)
    elif kind is int and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        cast = int(value)
    elif kind is float and isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    elif kind in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        cast = kind(value)
    else:
        try:
            cast = kind(value if isinstance(value, str) else str(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
            name = getattr(kind, "__name__", repr(kind))
            raise ConfigError(f"{where}: cannot read {value!r} as {name}: {e}") from e
    if isinstance(cast, float) and math.isnan(cast):
        raise ConfigError(f"{where}: NaN is not a valid setting")
    if action.choices is not None and cast not in action.choices:
        raise ConfigError(f"{where}: {cast!r} is not one of {sorted(action.choices, key=str)}")
    return cast


def allow_null(action: argparse.Action) -> argparse.Action:
    """Mark ``action`` as a flag whose None means something even where its default is a value, so that a preset may
    set it to null (``ema_decay``: null turns the EMA off, also in train_MARDM.py, which keeps one by default)."""
    action.nullable = True  # type: ignore[attr-defined]
    return action


def _expected(action: argparse.Action) -> str:
    """What ``action`` takes, in words, for an error message (``an integer``, ``one of ['bf16', 'fp16', 'no']``)."""
    if _is_flag(action):
        return "true or false"
    if action.choices is not None:
        one = f"one of {sorted(action.choices, key=str)}"
    else:
        one = _TYPE_WORDS.get(action.type) or f"a {getattr(action.type, '__name__', 'value').replace('_', ' ')}"
    many = isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*") or isinstance(action.nargs, int)
    return f"a list ({one} each)" if many else one


def cast_value(value: Any, action: argparse.Action, where: str) -> Any:
    """Cast a YAML value for ``action``: booleans for flags, lists for ``nargs``, ``type`` and ``choices`` otherwise."""
    if value is None:
        # null is "not given" only for a flag whose default is None (--kmeans_init, --cfg: the registry entry or the
        # dataset spec decides) or one marked by ``allow_null``. Elsewhere None is no setting (batch_size, seed, lr,
        # an on/off flag's third state) and would fail far from the preset, or silently read as off.
        if action.default is None or getattr(action, "nullable", False):
            return None
        raise ConfigError(f"{where}: expected {_expected(action)}, got null (leave the key out for the default, "
                          f"{action.default})")
    if _is_flag(action):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):  # --edit_frames A --edit_frames B: a list, or one value
        items = value if isinstance(value, list) else [value]
        return [_cast_one(v, action, f"{where}[{i}]") for i, v in enumerate(items)]
    nargs = action.nargs
    if nargs in ("+", "*") or isinstance(nargs, int):
        items = value if isinstance(value, list) else [value]
        # An empty list is accepted where it is the flag's own default (a stage without milestones), so that the
        # run's saved opt.yaml reads back; elsewhere ``nargs="+"`` wants a value, as on the command line.
        if nargs == "+" and not items and action.default != []:
            raise ConfigError(f"{where}: expected at least one value")
        if isinstance(nargs, int) and len(items) != nargs:
            raise ConfigError(f"{where}: expected {nargs} values, got {len(items)}: {value!r}")
        return [_cast_one(v, action, f"{where}[{i}]") for i, v in enumerate(items)]
    return _cast_one(value, action, where)


def _written_as(action: argparse.Action, flag: str) -> str:
    """How a preset writes what ``flag`` of ``action`` sets: its key, with the value when the flag takes none
    (``--no_mm`` is ``cal_mm: false``, not ``cal_mm``; ``--gumbel_sample`` is ``sampling: gumbel``)."""
    if action.nargs != 0:
        return action.dest
    if isinstance(action, argparse.BooleanOptionalAction):
        value = not flag.startswith("--no-")
    else:
        value = action.const
    return f"{action.dest}: {str(value).lower() if isinstance(value, bool) else value}"


def load_preset(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    """Read a YAML preset and return ``{dest: cast value}``; unknown keys and bad values raise :class:`ConfigError`."""
    return _read_preset(parser, path)[0]


# ``_read_preset``'s record for a file that is not a run's opt.yaml (None is a record: a run started without preset).
_NO_RECORD = object()


def _read_preset(parser: argparse.ArgumentParser, path: str) -> tuple[dict[str, Any], Any]:
    """``load_preset``'s values, and the preset a run's ``opt.yaml`` records under ``config`` (``_NO_RECORD`` for
    another file, or an opt.yaml written before it recorded one)."""
    raw, nodes = _load_mapping(path)
    actions = _actions_by_dest(parser)
    values = {}
    record = _NO_RECORD
    for key, value in raw.items():
        if key == "config":
            if os.path.basename(path) == CONFIG_NAME:
                record = value if value is None else str(value)
            elif value is not None:
                # Refused rather than warned about: a run that went on without the named preset's settings would
                # be found out only after training, and a copy of an opt.yaml needs only this line deleted.
                raise ConfigError(f"{path}: config: {value} is not read: presets do not nest (a run's "
                                  f"{CONFIG_NAME} records there the preset it started from); pass --config {value} "
                                  f"and put this file's other settings on the command line, or copy that preset's "
                                  f"keys into this file and delete the line (a copy of a run's {CONFIG_NAME} holds "
                                  f"them already: delete the line)")
            continue
        if key not in actions:
            # A key spelled as a flag of another name (MoMask's --loss_vel, --cfg) names the key of that setting,
            # rather than a close name that may be another setting (loss_joint_vel).
            flag = f"--{key}"
            alias = next((_written_as(a, flag) for a in parser._actions if flag in a.option_strings and
                          a.dest in actions), None)
            close = difflib.get_close_matches(str(key), list(actions), n=3, cutoff=0.6)
            hint = (f"; a preset names a setting by its key: {flag} is written {alias}" if alias else
                    f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(sorted(actions))}")
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
        action = actions[key]
        if action.type in (None, str) and not _is_flag(action):
            value = _as_written(value, nodes.get(key))
        elif not _is_flag(action):
            value = _numbers_as_written(value, nodes.get(key))
        values[key] = cast_value(value, action, f"{path}: {key}")
    return values, record


# The repository root: the shipped presets are options/configs/*.yaml under it.
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resolve_config_path(path: str) -> str:
    """``path`` as written when it exists (or is absolute), else the same relative path under the repository root
    when that exists there: the documented ``--config options/configs/<preset>.yaml`` then works from any working
    directory (scripts run from anywhere with ``FSQ_MARDM_HOME``)."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    shipped = os.path.join(CODE_ROOT, path)
    return shipped if os.path.isfile(shipped) else path


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with precedence defaults < ``--config`` YAML < command line.

    The parser needs a ``--config`` option (``options.base_options.get_base_parser`` has one). Flags the YAML sets
    are no longer required on the command line. ``--name`` must end up set somewhere. A relative ``--config`` that
    is not found from the working directory is read from the repository root (``resolve_config_path``).
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        known.config = resolve_config_path(known.config)
        try:
            preset, record = _read_preset(parser, known.config)
        except ConfigError as e:
            parser.error(str(e))
        actions = _actions_by_dest(parser)
        for dest in preset:
            actions[dest].required = False
        # argparse appends a repeatable flag's values to its default: the command line's must replace the preset's.
        appended = {dest: value for dest, value in preset.items() if isinstance(actions[dest], argparse._AppendAction)}
        parser.set_defaults(**{**preset, **dict.fromkeys(appended)})
    args = parser.parse_args(argv)
    if known.config:
        # The preset the run started from, for its opt.yaml: the file read, unless that is a run's opt.yaml, which
        # keeps its own record (``--config <run>/opt.yaml --is_continue`` rewrites the file it read).
        args.config = known.config if record is _NO_RECORD else record
        for dest, value in appended.items():
            if getattr(args, dest) is None:  # not typed on the command line
                setattr(args, dest, value)
    if getattr(args, "name", "") is None:
        parser.error("--name is required (on the command line or in the --config YAML)")
    # The training length is one setting in two units: an --epoch typed on the command line replaces the preset's
    # max_iters rather than losing to it (max_iters wins over epoch whenever both are set).
    given = _given_dests(parser, sys.argv[1:] if argv is None else argv)
    in_config = {dest for dest, value in preset.items() if value is not None} if known.config else set()
    _GIVEN[id(args)] = (frozenset(given), frozenset(in_config), known.config)
    weakref.finalize(args, _GIVEN.pop, id(args), None)
    if known.config and "epoch" in given and "max_iters" not in given and getattr(args, "max_iters", None) is not None:
        args.max_iters = None
    for dest in ("max_iters", "epoch", "batch_size"):
        if getattr(args, dest, None) is not None and getattr(args, dest) < 1:
            parser.error(f"{option_origin(args, dest)} must be at least 1, got {getattr(args, dest)}")
    return args


# Destinations typed on the command line, those the --config preset set, and the file read, per namespace
# parse_with_config returned (by id: a Namespace is not hashable; the entry goes with the namespace). Kept off the
# namespace, whose vars() is the run's recorded config.
_GIVEN: dict[int, tuple[frozenset[str], frozenset[str], str | None]] = {}
_NOTHING_GIVEN = (frozenset(), frozenset(), None)


def given_on_command_line(args: argparse.Namespace) -> frozenset[str]:
    """Destinations of the flags typed on the command line ``parse_with_config`` read ``args`` from, even those
    typed at their default value (empty for a namespace it did not return)."""
    return _GIVEN.get(id(args), _NOTHING_GIVEN)[0]


def given_in_config(args: argparse.Namespace) -> frozenset[str]:
    """Destinations the ``--config`` preset ``parse_with_config`` read for ``args`` sets to a value (not null), even
    the flag's default value (empty without a preset, or for a namespace it did not return)."""
    return _GIVEN.get(id(args), _NOTHING_GIVEN)[1]


def preset_file(args: argparse.Namespace) -> str | None:
    """The ``--config`` file ``parse_with_config`` read ``args`` from (None without one, or for a namespace it did
    not return): ``args.config`` itself, except for a run's opt.yaml, where that keeps the preset the run started
    from."""
    return _GIVEN.get(id(args), _NOTHING_GIVEN)[2]


def _given_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """Destinations of the options spelled out in ``argv`` (``--flag value``, ``--flag=value`` or an abbreviation
    argparse accepts, such as ``--epo``). A value is never taken for a flag: argparse itself reads a token as an
    option by the same rules (the whole token, or its text before ``=``, is a flag or the abbreviation of one), and
    ``--text_prompt "--seed=3 walks"`` is refused as a missing --text_prompt value, not read as a prompt."""
    by_option = {opt: action.dest for action in parser._actions for opt in action.option_strings}
    given = set()
    for token in argv:
        key = token.split("=", 1)[0]
        if not key.startswith("--"):
            continue
        dests = ({by_option[key]} if key in by_option else
                 {dest for opt, dest in by_option.items() if parser.allow_abbrev and opt.startswith(key)})
        if len(dests) == 1:
            given |= dests
    return given


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, np.generic):  # a numpy scalar: its Python value (np.int64 is no int, np.float64 a float)
        return _plain(value.item())
    for kind in (int, float, str):  # other subclasses, which safe_dump cannot write; an enum as its str() below
        if isinstance(value, kind) and not isinstance(value, enum.Enum):
            return kind(value)
    return str(value)


def config_to_dict(args: argparse.Namespace | dict[str, Any]) -> dict[str, Any]:
    """Plain values only (tuples as lists, paths as strings): safe for YAML and for ``weights_only`` checkpoints."""
    items = vars(args) if isinstance(args, argparse.Namespace) else args
    return {str(k): _plain(v) for k, v in items.items()}


def save_config(args: argparse.Namespace | dict[str, Any], path: str) -> None:
    """Write the resolved config as YAML (the run's ``opt.yaml``), atomically; on the first process only, under
    ``torchrun`` / ``accelerate launch`` (like the run folder, see ``RunDir.make_dirs``)."""
    if not is_first_process():
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path) as f:
        yaml.safe_dump(config_to_dict(args), f, sort_keys=True, default_flow_style=None)


def option_origin(args: argparse.Namespace, dest: str) -> str:
    """``--<dest>`` as an error message should name it: with where its value came from when the ``--config`` preset
    set it and the command line did not (``--ae_model (ae_model: FSQ_AE_Tiny in options/configs/tiny_mardm.yaml)``),
    so a refusal never seems to blame a flag the user did not type. Read from ``parse_with_config``'s record of
    ``args``, not by comparing values: a preset's ``1e-4`` or ``'64'`` is a string in the YAML file."""
    flag = f"--{dest}"
    if dest not in given_in_config(args) or dest in given_on_command_line(args):
        return flag
    return f"{flag} ({dest}: {getattr(args, dest, None)} in {preset_file(args)})"


class _PresetLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping, which PyYAML would silently read as the
    last of its values (a preset setting ``lr`` twice is a mistake, not an override)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base``: the mapping's own keys override it
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                            f"found duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader refuses it with its own message
                pass
        return super().construct_mapping(node, deep=deep)


def load_config(path: str) -> dict[str, Any]:
    """Read a YAML mapping (a preset or a saved ``opt.yaml``); errors name the file."""
    return _load_mapping(path)[0]


def _load_mapping(path: str) -> tuple[dict[Any, Any], dict[Any, yaml.Node]]:
    """``load_config``'s mapping, and the YAML node each of its keys was read from."""
    try:
        # UTF-8 (YAML's own encoding) whatever the locale, which could read a non-ASCII path or caption otherwise.
        with open(path, encoding="utf-8") as f:
            loader = _PresetLoader(f)
            try:
                node = loader.get_single_node()
                data = None if node is None else loader.construct_document(node)
                nodes = ({loader.construct_object(key, deep=True): value for key, value in node.value}
                         if isinstance(data, dict) else {})
            finally:
                loader.dispose()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of flag names to values, got {type(data).__name__}")
    return data, nodes


def _as_written(value: Any, node: yaml.Node | None) -> Any:
    """A text flag's YAML value as the file spells it, as if typed on the command line: YAML 1.1 reads a plain
    ``no`` as False, ``1.10`` as 1.1 and ``010`` as 8 (``mixed_precision: no``). Quoted text and null stay as read."""
    if isinstance(node, yaml.ScalarNode) and node.style is None and value is not None and not isinstance(value, str):
        return node.value
    if isinstance(node, yaml.SequenceNode) and isinstance(value, list):
        return [_as_written(item, item_node) for item, item_node in zip(value, node.value)]
    return value


# YAML 1.1 integers, and floats in base 60, that a number flag reads as the command line would read their text:
# ``0042`` is octal 34 to PyYAML, 42 typed; ``1:00`` is 60 to PyYAML, an error typed; ``0x10`` 16, an error as a float.
_YAML_INT = "tag:yaml.org,2002:int"
_YAML_FLOAT = "tag:yaml.org,2002:float"


def _numbers_as_written(value: Any, node: yaml.Node | None) -> Any:
    """A number flag's YAML value as the file spells it where PyYAML reads the text otherwise than the flag's type
    would (every plain integer, and a float written in base 60); other values stay as read (``.inf``, quoted text)."""
    if isinstance(node, yaml.ScalarNode) and node.style is None and not isinstance(value, (str, bool)) and \
            (node.tag == _YAML_INT or (node.tag == _YAML_FLOAT and ":" in node.value)):
        return node.value
    if isinstance(node, yaml.SequenceNode) and isinstance(value, list):
        return [_numbers_as_written(item, item_node) for item, item_node in zip(value, node.value)]
    return value


def _checked_number(text: str, ok: Callable[[float], bool], expected: str) -> float:
    """``text`` as a float, or ``argparse.ArgumentTypeError`` naming what was ``expected``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """Flag type: a whole number >= 1 (steps, counts, batch sizes)."""
    return int(_checked_number(text, lambda v: v.is_integer() and v >= 1, "a whole number >= 1"))


def int_at_least(minimum: int) -> Callable[[str], int]:
    """Flag type: a whole number >= ``minimum`` (a width whose layers halve it, where a small one leaves no feature)."""
    def whole_number_at_least(text: str) -> int:
        return int(_checked_number(text, lambda v: v.is_integer() and v >= minimum, f"a whole number >= {minimum}"))

    whole_number_at_least.__name__ = f"whole number >= {minimum}"  # how a refused preset value names it
    return whole_number_at_least


def int_between(minimum: int, maximum: int) -> Callable[[str], int]:
    """Flag type: a whole number from ``minimum`` to ``maximum`` (FSQ levels, which the quantizer's bound caps)."""
    def whole_number_between(text: str) -> int:
        return int(_checked_number(text, lambda v: v.is_integer() and minimum <= v <= maximum,
                                   f"a whole number from {minimum} to {maximum}"))

    whole_number_between.__name__ = f"whole number from {minimum} to {maximum}"
    return whole_number_between


def non_negative_int(text: str) -> int:
    """Flag type: a whole number >= 0 (counts where 0 means all, such as validation batches)."""
    return int(_checked_number(text, lambda v: v.is_integer() and v >= 0, "a whole number >= 0"))


def positive_float(text: str) -> float:
    """Flag type: a finite number > 0 (frame rates)."""
    return _checked_number(text, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def non_negative_float(text: str) -> float:
    """Flag type: a finite number >= 0 (guidance scales, where 0 is unconditional; temperatures)."""
    return _checked_number(text, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def clip_norm(text: str) -> float:
    """Flag type: a number >= 0 or inf (a gradient-norm clip: 0 turns it off, inf measures the norm without
    clipping)."""
    return _checked_number(text, lambda v: v >= 0, "a number >= 0 (0: off)")


def fraction_below_one(text: str) -> float:
    """Flag type: a number in [0, 1) (the share of logits a top-k filter drops; dropout and condition-dropout
    probabilities, label smoothing)."""
    return _checked_number(text, lambda v: 0 <= v < 1, "a number in [0, 1)")


def probability(text: str) -> float:
    """Flag type: a number in [0, 1] (the probability of dropping trailing residual layers, which may be 1)."""
    return _checked_number(text, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def seed_int(text: str) -> int:
    """Flag type: a whole number in [0, 2^64), the seeds torch takes that numpy's seed sequences take too. Read
    exactly, not through a float (3407 and 2^64 - 1 alike)."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = -1
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected a whole number in [0, 2^64), got {text!r}")
    return value


def decay_or_none(text: str) -> float | None:
    """Flag type: a decay in [0, 1), or ``none`` / ``off`` for no EMA at all (``--ema_decay none`` turns off
    train_MARDM.py's default EMA from the command line, as ``ema_decay: null`` does in a preset)."""
    if text.strip().lower() in ("none", "off", "null"):
        return None
    return _checked_number(text, lambda v: 0 <= v < 1, "a number in [0, 1), or none")


# How ``_expected`` names each flag type (others by their function name: ``torch_device`` is "a torch device").
_TYPE_WORDS: dict[Any, str] = {None: "a text value", str: "a text value", int: "an integer", float: "a number",
                               positive_int: "a whole number >= 1", non_negative_int: "a whole number >= 0",
                               positive_float: "a finite number > 0", non_negative_float: "a finite number >= 0",
                               fraction_below_one: "a number in [0, 1)", probability: "a number in [0, 1]",
                               clip_norm: "a number >= 0 (0: off)",
                               decay_or_none: "a number in [0, 1), or none", seed_int: "a whole number in [0, 2^64)"}


def epochs_to_iters(epochs: int, dataset_len: int, batch_size: int, drop_last: bool = True) -> int:
    """Optimizer steps in ``epochs`` passes over ``dataset_len`` samples with global batch ``batch_size``.

    ``drop_last`` matches the engine, which drops the incomplete last batch of every epoch.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs_to_iters: epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    per_epoch = dataset_len // batch_size if drop_last else math.ceil(dataset_len / batch_size)
    if per_epoch == 0:
        raise ValueError(f"epochs_to_iters: {dataset_len} samples make no full batch of {batch_size}; "
                         f"lower --batch_size")
    return epochs * per_epoch


def resolve_max_iters(args: argparse.Namespace, dataset_len: int) -> int:
    """``--max_iters`` when given, else ``--epoch`` epochs of ``dataset_len`` samples at ``--batch_size``. A
    ``max_iters`` below 1 is an error, never "not given": it does not fall back to ``--epoch``."""
    if getattr(args, "max_iters", None) is not None:
        if args.max_iters < 1:
            raise ValueError(f"--max_iters must be at least 1, got {args.max_iters}")
        return int(args.max_iters)
    if getattr(args, "epoch", None):
        return epochs_to_iters(args.epoch, dataset_len, args.batch_size)
    raise ValueError("set --max_iters or --epoch")
