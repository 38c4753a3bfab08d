"""Old import path of table management and garbage collection: now ``dynamo_sessions.ops.table``
and ``dynamo_sessions.ops.gc`` (kept so that existing imports keep working)."""

from .errors import GcThrottled, TableExists, TableNotFound
from .ops.gc import EXPIRED_AND_UNLOCKED, GarbageCollector, GcInterrupted, GcResult
from .ops.table import (
    TTL_ALREADY_ENABLED,
    create_table,
    delete_table,
    describe_table,
    enable_time_to_live,
)

__all__ = ["EXPIRED_AND_UNLOCKED", "TTL_ALREADY_ENABLED", "GarbageCollector", "GcInterrupted",
           "GcResult", "GcThrottled", "TableExists", "TableNotFound", "create_table",
           "delete_table", "describe_table", "enable_time_to_live"]
