"""The switched-off circuit breaker."""

from __future__ import annotations

import pytest

from secmw.breaker import NoBreaker

pytestmark = pytest.mark.anyio


async def test_no_breaker_calls_through_and_lets_errors_propagate() -> None:
    breaker = NoBreaker()

    async def add(a: int, b: int = 0) -> int:
        return a + b

    assert await breaker.call(add, 1, b=2) == 3
    async with breaker:
        pass
    with pytest.raises(KeyError):
        async with breaker:
            raise KeyError("x")
