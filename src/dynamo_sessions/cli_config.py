"""Old import path of the command line's options: now ``dynamo_sessions.cli.options`` (kept so
that existing imports keep working)."""

from .cli.options import (
    COMMON,
    CONFIG_ENV,
    FILE_ONLY,
    Option,
    Settings,
    file_values,
    load_config_file,
    resolve,
    session_config,
)
from .errors import OptionError

__all__ = ["COMMON", "CONFIG_ENV", "FILE_ONLY", "Option", "OptionError", "Settings",
           "file_values", "load_config_file", "resolve", "session_config"]
