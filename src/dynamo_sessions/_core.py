"""The one place that chooses the compiled core or its pure-Python twin.

``DYNAMO_SESSIONS_NO_EXTENSIONS=1`` forces the twin; otherwise the compiled module is used when
it imports.  ``IMPLEMENTATION`` says which one is loaded ("compiled" or "python").  The names
below are what the rest of the package uses of the core (its whole API is the twin's
``__all__``; the rules both cores share are in ``_rules``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

NO_EXTENSIONS = os.environ.get("DYNAMO_SESSIONS_NO_EXTENSIONS", "") not in ("", "0")

if TYPE_CHECKING or NO_EXTENSIONS:
    from . import _core_py as core

    IMPLEMENTATION = "python"
else:
    try:
        from . import _core_c as core

        IMPLEMENTATION = "compiled"
    except ImportError:  # no compiled core for this platform: the pure-Python wheel
        from . import _core_py as core

        IMPLEMENTATION = "python"

encode_session = core.encode_session
decode_session = core.decode_session
pack_session = core.pack_session
unpack_session = core.unpack_session
item_size = core.item_size
attribute_value_size = core.attribute_value_size
number_size = core.number_size
write_units = core.write_units
read_units = core.read_units
LockRetryBackoff = core.LockRetryBackoff
MAX_ITEM_BYTES = core.MAX_ITEM_BYTES
MAX_PACKED_BYTES = core.MAX_PACKED_BYTES
WRITE_UNIT_BYTES = core.WRITE_UNIT_BYTES
READ_UNIT_BYTES = core.READ_UNIT_BYTES
