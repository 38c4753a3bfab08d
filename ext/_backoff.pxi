# Part of the compiled core ``dynamo_sessions._core_c``, included by ``_core_c.pyx``
# (one extension module: calls between the parts stay C calls).
# The lock-retry backoff schedule: LockRetryBackoff.
# Names it uses (cimports, C declarations, C copies of ``_rules``) are in ``_core_c.pyx``.


# The arguments of the last backoff built (exact int / float / str objects) and what
# _rules.backoff_settings answered for them: a store builds every backoff from the same option
# objects, so the shared check runs once, not on every lock wait.
cdef object _last_min = None, _last_max = None, _last_wait = None, _last_mode = None
cdef tuple _last_settings = None


cdef class LockRetryBackoff:
    cdef public unsigned long long min_retry_microseconds
    cdef public unsigned long long max_retry_microseconds
    cdef public double max_wait_seconds
    cdef public str mode
    cdef public long long attempt
    cdef public double deadline
    cdef public double slept_seconds
    cdef bint _exponential
    cdef uint64_t _state
    cdef object _clock
    cdef object _sleep

    def __init__(
        self,
        min_retry_microseconds=10_000,
        max_retry_microseconds=50_000,
        max_wait_seconds=10.0,
        mode="exponential",
        seed=None,
        clock=time.monotonic,
        sleep=time.sleep,
    ):
        global _last_min, _last_max, _last_wait, _last_mode, _last_settings
        if (_last_settings is not None and min_retry_microseconds is _last_min
                and max_retry_microseconds is _last_max and max_wait_seconds is _last_wait
                and mode is _last_mode):
            settings = _last_settings
        else:
            settings = _backoff_settings(  # raises for bad arguments
                min_retry_microseconds, max_retry_microseconds, max_wait_seconds, mode)
            if (type(min_retry_microseconds) is int and type(max_retry_microseconds) is int
                    and type(max_wait_seconds) in (float, int) and type(mode) is str):
                _last_min, _last_max = min_retry_microseconds, max_retry_microseconds
                _last_wait, _last_mode, _last_settings = max_wait_seconds, mode, settings
        (self.min_retry_microseconds, self.max_retry_microseconds, self.max_wait_seconds,
         self.mode, self._exponential) = settings
        # _rules.backoff_state in C: 64 bits from secrets, else the seed modulo 2**64.
        self._state = (secrets.randbits(64) if seed is None
                       else PyLong_AsUnsignedLongLongMask(int(seed)))
        self._clock = clock  # attempt, deadline, slept_seconds: set by start()
        self._sleep = sleep
        self.start()

    cdef inline uint64_t _next_random(self):
        # splitmix64
        self._state += 0x9E3779B97F4A7C15ULL
        cdef uint64_t z = self._state
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
        return z ^ (z >> 31)

    def start(self):
        """Begin a new wait: reset the attempt count and set the deadline from now."""
        self.attempt = 0
        self.slept_seconds = 0.0
        self.deadline = self._clock() + self.max_wait_seconds

    cdef unsigned long long _next_delay(self):
        cdef unsigned long long low = self.min_retry_microseconds
        cdef unsigned long long high = self.max_retry_microseconds
        cdef unsigned long long span
        if self._exponential and self.attempt < 62 and low:
            if low <= (high >> self.attempt):  # min(high, low << attempt) without overflow
                high = low << self.attempt
        self.attempt += 1
        span = high - low + 1
        if span == 0:  # the whole 64-bit range
            return self._next_random()
        return low + self._next_random() % span

    def next_delay_microseconds(self):
        """Draw the next delay (microseconds) of the schedule and count the attempt."""
        return self._next_delay()

    def remaining_seconds(self):
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline - self._clock())

    def wait(self):
        """Sleep before the next attempt; ``False`` (without sleeping) once the deadline passed.

        The sleep is the next delay of the schedule, cut so that it ends at the deadline.
        """
        cdef double remaining = self.deadline - self._clock()
        if remaining <= 0:
            return False
        cdef double delay = min(<double>self._next_delay() / 1_000_000, remaining)
        self._sleep(delay)
        self.slept_seconds += delay
        return True


# A cdef class's docstring is fixed when it compiles; this one is the twin's, from _rules.DOCS.
ds_set_type_doc(LockRetryBackoff, _DOCS["LockRetryBackoff"])

