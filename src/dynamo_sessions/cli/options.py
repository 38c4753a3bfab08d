"""Options of the command line: flags, environment variables and a config file.

Precedence: a flag given on the command line, then the environment, then the config file, then
the built-in default.  The config file (``--config`` or ``$DYNAMO_SESSIONS_CONFIG``) is TOML
(``*.toml``, read with ``tomllib``: Python 3.11+) or JSON (``*.json``, every Python version).
Top-level keys set the options every command has - every ``SessionConfig`` option among them
(``lock_lease_seconds``, ``read_timeout_seconds``, ...; all but ``client`` and
``on_operation``); a table named after a command (``[gc]``, ``[create-table]``, ...) sets that
command's options.  Keys are the long option names (``-`` or ``_``); unknown keys and values of
the wrong type are rejected.  An option that is a ``SessionConfig`` option carries that
option's name, as flag and as key, and reaches the ``SessionConfig`` of the command
(:func:`session_config`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import json
import os
import sys
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import BOTO_RETRY_MODES, SessionConfig
from ..errors import OptionError

CONFIG_ENV = "DYNAMO_SESSIONS_CONFIG"
_DEFAULTS = SessionConfig()


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a command: its flag, type, default, and where else it may come from."""

    flag: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    in_file: bool = True
    minimum: float | None = None
    maximum: float | None = None
    multiple: bool = False
    metavar: str | None = None
    aliases: tuple[str, ...] = ()
    """Other spellings of the flag on the command line (not in the config file)."""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def add_to(self, parser: Any) -> None:
        """Add the flag to an argparse parser or argument group."""
        sources = []
        if self.env:
            sources.append("env " + "/".join(f"${name}" for name in self.env))
        if self.kind is bool:
            if self.default is True:
                sources.append("default on")
        elif self.default is not None and self.default != ():
            sources.append(f"default {self.default}")
        help_text = self.help + (f" ({'; '.join(sources)})" if sources else "")
        if self.kind is bool:
            # a flag that is on by default is turned off with --no-<name>
            parser.add_argument(
                self.flag, *self.aliases, default=argparse.SUPPRESS, help=help_text,
                action=argparse.BooleanOptionalAction if self.default else "store_true")
            return
        parser.add_argument(
            self.flag, *self.aliases, dest=self.dest, type=self._parse, choices=self.choices,
            default=argparse.SUPPRESS,
            action="append" if self.multiple else "store", help=help_text,
            metavar=self.metavar,
        )

    def _parse(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if self.kind is int else 'a number'}, got {text!r}"
            ) from None
        try:
            self.check(value)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    def check(self, value: Any) -> None:
        if self.minimum is not None and value < self.minimum:
            raise OptionError(f"{self.flag} must be >= {self.minimum:g}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise OptionError(f"{self.flag} must be <= {self.maximum:g}, got {value}")

    def from_text(self, text: str, source: str) -> Any:
        """A value given as text (environment variable)."""
        if self.kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off", ""):
                return False
            raise OptionError(f"{source}={text!r}: expected true or false")
        try:
            value = self.kind(text)
        except ValueError:
            raise OptionError(f"{source}={text!r}: expected a {self.kind.__name__}") from None
        return self.validate(value, source)

    def validate(self, value: Any, source: str) -> Any:
        """A value from a config file: checked for type, choices and range."""
        values = value if self.multiple and isinstance(value, list) else [value]
        for item in values:
            ok = isinstance(item, self.kind) and not (
                self.kind is not bool and isinstance(item, bool)
            )
            if self.kind is float and isinstance(item, int) and not isinstance(item, bool):
                ok = True
            if not ok:
                raise OptionError(
                    f"{source}: expected {'a list of ' if self.multiple else ''}"
                    f"{self.kind.__name__}, got {item!r}"
                )
            if self.choices is not None and item not in self.choices:
                raise OptionError(f"{source}: {item!r} is not one of {', '.join(self.choices)}")
            if self.kind in (int, float):
                try:
                    self.check(item)
                except OptionError as exc:
                    raise OptionError(f"{source}: {exc}") from None
        if self.kind is float:
            return [float(v) for v in values] if self.multiple else float(value)
        return list(values) if self.multiple else value


COMMON = (
    Option("--table-name", str, "sessions", "DynamoDB table of the sessions",
           env=("DYNAMO_SESSIONS_TABLE_NAME",)),
    Option("--endpoint-url", str, None,
           "DynamoDB endpoint, e.g. http://127.0.0.1:8000 for DynamoDB Local",
           env=("DYNAMO_SESSIONS_ENDPOINT_URL",)),
    Option("--region-name", str, None, "AWS region", env=("AWS_REGION", "AWS_DEFAULT_REGION"),
           aliases=("--region",), metavar="REGION"),
    Option("--profile", str, None, "AWS profile of ~/.aws/config (SessionConfig.profile_name)",
           env=("AWS_PROFILE",)),
    Option("--connect-timeout-seconds", float, _DEFAULTS.connect_timeout_seconds,
           "longest wait for a connection to DynamoDB (botocore retries past it)",
           minimum=0.001),
    Option("--read-timeout-seconds", float, _DEFAULTS.read_timeout_seconds,
           "longest wait for DynamoDB's answer to one call (botocore retries past it)",
           minimum=0.001),
    Option("--boto-retry-mode", str, _DEFAULTS.boto_retry_mode, "botocore's retry mode",
           choices=BOTO_RETRY_MODES, env=("AWS_RETRY_MODE",)),
    Option("--boto-max-attempts", int, _DEFAULTS.boto_max_attempts,
           "attempts per DynamoDB call in all, the first included", minimum=1,
           env=("AWS_MAX_ATTEMPTS",)),
    Option("--log-level", str, "WARNING", "log level of the library's logger, on stderr",
           choices=("DEBUG", "INFO", "WARNING", "ERROR")),
)

SESSION_OPTIONS = frozenset(SessionConfig.option_names())
FILE_KINDS = (bool, int, float, str)
"""The types a config file can hold; an option of another type (``client``, ``on_operation``)
is no key of the file."""


def _file_kind(annotation: Any) -> type | None:
    """``int`` for ``int``, ``str`` for ``str | None``; ``None`` for what no file holds."""
    kinds = [kind for kind in (typing.get_args(annotation) or (annotation,))
             if kind is not type(None)]
    return kinds[0] if len(kinds) == 1 and kinds[0] in FILE_KINDS else None


def _file_options() -> tuple[Option, ...]:
    hints = typing.get_type_hints(SessionConfig)
    common = {option.dest for option in COMMON} | {"profile_name"}  # --profile
    return tuple(Option("--" + name.replace("_", "-"), kind, None,
                        f"SessionConfig.{name} (config file only)")
                 for name in SessionConfig.option_names()
                 if name not in common and (kind := _file_kind(hints[name])) is not None)


FILE_ONLY = _file_options()
"""Every other ``SessionConfig`` option a file can hold, as a top-level key of the config file
(a command's own flag of the same name, where it has one, takes precedence).  The ranges and
choices are ``SessionConfig``'s own checks."""


@dataclasses.dataclass
class Settings:
    """Resolved options of one command: ``values[dest]`` and where each came from."""

    command: str
    values: dict[str, Any]
    sources: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("values", "sources", "command"):
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def load_config_file(path: str) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict (``OptionError`` when it cannot be read)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise OptionError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise OptionError(f"config file {path} is not valid JSON: {exc}") from None
    elif file.suffix.lower() == ".toml":
        if sys.version_info < (3, 11):
            raise OptionError(
                f"config file {path}: TOML needs Python 3.11+ (tomllib); on Python 3.10 use a "
                "JSON file (same keys) instead"
            )
        tomllib = importlib.import_module("tomllib")  # not importable on 3.10 (mypy's target)
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise OptionError(f"config file {path} is not valid TOML: {exc}") from None
    else:
        raise OptionError(f"config file {path}: name it *.toml or *.json")
    if not isinstance(data, dict):
        raise OptionError(f"config file {path}: expected a table/object at the top")
    return data


def _norm(key: str) -> str:
    return str(key).replace("-", "_")


def _unknown(key: str, known: Sequence[str], where: str) -> OptionError:
    close = difflib.get_close_matches(_norm(key), list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return OptionError(f"unknown key {key!r} {where}{hint}; known: {', '.join(sorted(known))}")


def file_values(data: Mapping[str, Any], path: str, command: str,
                commands: Mapping[str, Sequence[Option]]) -> dict[str, Any]:
    """The options a config file sets for ``command``, validated; unknown keys rejected.  The
    command's own table (``[gc]``) wins over the top-level keys."""
    top = {option.dest: option for option in (*COMMON, *FILE_ONLY) if option.in_file}
    sections = {_norm(name): name for name in commands}
    values: dict[str, Any] = {}
    own_values: dict[str, Any] = {}
    for key, value in data.items():
        name = _norm(key)
        if name in top:
            values[name] = top[name].validate(value, f"{path}: {key}")
        elif name in sections:
            if not isinstance(value, dict):
                raise OptionError(f"{path}: [{key}] must be a table of options")
            own = {o.dest: o for o in commands[sections[name]] if o.in_file}
            for sub, sub_value in value.items():
                if _norm(sub) not in own:
                    raise _unknown(sub, list(own), f"in [{key}] of {path}")
                if sections[name] == command:
                    own_values[_norm(sub)] = own[_norm(sub)].validate(
                        sub_value, f"{path}: [{key}] {sub}")
        else:
            raise _unknown(key, [*top, *sections], f"in {path}")
    return {**values, **own_values}


def resolve(command: str, given: Mapping[str, Any], options: Sequence[Option],
            commands: Mapping[str, Sequence[Option]],
            environ: Mapping[str, str] | None = None) -> Settings:
    """Merge flags > environment > config file > defaults for ``command``."""
    environ = os.environ if environ is None else environ
    config_path = given.get("config") or environ.get(CONFIG_ENV) or None
    from_file: dict[str, Any] = {}
    if config_path:
        from_file = file_values(load_config_file(config_path), config_path, command, commands)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    declared = {option.dest for option in options}
    for option in (*COMMON, *options, *(o for o in FILE_ONLY if o.dest not in declared)):
        dest = option.dest
        if dest in given:
            values[dest], sources[dest] = given[dest], "flag"
            continue
        env_name = next((name for name in option.env if environ.get(name)), None)
        if env_name is not None:
            values[dest] = option.from_text(environ[env_name], env_name)
            sources[dest] = f"${env_name}"
        elif dest in from_file:
            values[dest], sources[dest] = from_file[dest], f"config file {config_path}"
        else:
            values[dest], sources[dest] = option.default, "default"
    values["config"] = config_path
    return Settings(command, values, sources)


def session_config(settings: Settings) -> SessionConfig:
    """The ``SessionConfig`` of every session option the command resolved (flag, environment,
    config file or default; an option left unset keeps ``SessionConfig``'s default).  A
    repeatable option (the demo's ``--locking``) is left to the command: it builds one config
    per value."""
    options = {name: value for name, value in settings.values.items()  # a list: the demo's
               if name in SESSION_OPTIONS and value is not None and not isinstance(value, list)}
    if settings.values.get("profile"):
        options["profile_name"] = settings.values["profile"]
    return SessionConfig.from_options(options)
