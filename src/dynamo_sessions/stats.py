"""Old import path of the table statistics: now ``dynamo_sessions.ops.stats`` (kept so that
existing imports keep working)."""

from .ops.stats import (
    ModeCost,
    Sample,
    format_stats,
    gc_projection,
    percentile,
    project,
    sample_table,
    size_distribution,
    table_stats,
)

__all__ = ["ModeCost", "Sample", "format_stats", "gc_projection", "percentile", "project",
           "sample_table", "size_distribution", "table_stats"]
