"""The demo (``dynamo-sessions demo``): :mod:`.workload` runs a session workload under each
locking mode and prints what it cost; :mod:`.web` is the served demo (a Flask app and the
multi-tab page ``webdemo_tabs.html`` under gunicorn; ``demo --serve``, the ``server`` extra).

Without an endpoint both run on moto's server (``dynamo_sessions.testing.servers``), imported
inside the functions that start it: the demo is the one part of the package that uses the test
servers, and nothing imports the demo but the command line.
"""

from .workload import COLUMNS, LEGEND, format_table, run, run_mode

__all__ = ["COLUMNS", "LEGEND", "format_table", "run", "run_mode"]
