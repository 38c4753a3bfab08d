"""The session protocol: the item layout, session ids and the locking modes, free of I/O
(see :mod:`.steps`)."""
