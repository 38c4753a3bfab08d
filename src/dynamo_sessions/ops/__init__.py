"""Operations on the sessions table, outside any request: :mod:`.table` (create, describe,
delete, TTL), :mod:`.gc` (garbage collection), :mod:`.stats` (sizes and projected capacity).
The command line (``dynamo-sessions``) is a thin layer over these."""
