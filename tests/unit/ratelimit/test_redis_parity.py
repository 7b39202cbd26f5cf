"""Redis and memory stores agree: which error replies are per key, and reset seconds."""

from __future__ import annotations

import pytest

from secmw.ratelimit.redis_store import per_key_error


@pytest.mark.parametrize(
    ("message", "per_key"),
    [
        # The keys: another type, or a shape another algorithm left.
        ("WRONGTYPE Operation against a key holding the wrong kind of value", True),
        ("user_script:23: attempt to compare number with nil script: 1f0e...", True),
        ("ERR user_script:23: attempt to compare number with nil", True),
        (
            "Error running script (call to f_1f0e): @user_script:1: "
            "-WRONGTYPE Operation against a key holding the wrong kind of value",
            True,
        ),
        ("Error running script (call to f_1f0e): @user_script:23: attempt to compare", True),
        # The server: Redis 6 wraps the error of the command the script ran.
        (
            "Error running script (call to f_1f0e): @user_script:1: "
            "-READONLY You can't write against a read only replica.",
            False,
        ),
        ("Error running script (call to f_1f0e): @user_script:1: -OOM command not allowed", False),
        ("ERR Error running script (call to f_1f0e): @user_script:1: -MISCONF errors", False),
        # The server, as Redis 7 reports it.
        ("OOM command not allowed when used memory > 'maxmemory'.", False),
        ("READONLY You can't write against a read only replica.", False),
        ("NOREPLICAS Not enough good replicas to write.", False),
        ("LOADING Redis is loading the dataset in memory", False),
        ("BUSY Redis is busy running a script.", False),
    ],
)
def test_error_replies_are_told_apart(message: str, per_key: bool) -> None:
    assert per_key_error(message) is per_key


def test_the_legacy_reset_is_the_same_second_for_both_stores() -> None:
    # Redis reports 3.001 s (whole milliseconds, rounded up) where memory has 3.0004 s;
    # near a second boundary the epoch second used to differ by one.
    from secmw.ratelimit.algorithms import Limit
    from secmw.ratelimit.headers import rate_headers

    limit = Limit("t", "t:1", "t", "fixed-window", 5, 60.0, 5)
    now = 100.9995

    def reset_of(seconds: float) -> bytes:
        fields = dict(rate_headers("legacy", b"", (limit, 3, seconds), now))
        return fields[b"x-ratelimit-reset"]

    assert reset_of(3.0004) == reset_of(3.001) == b"105"
