"""A read-only, case-insensitive view of ASGI request headers that keeps duplicates."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from secmw.errors import BadRequest

RawHeaders = Sequence[tuple[bytes, bytes]]


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only view of ASGI headers that keeps duplicates.

    ``headers[name]`` and ``get`` return the first value; :meth:`get_all` returns
    every value, and :meth:`get_single` refuses a header sent more than once, which
    is what credential headers need.
    """

    __slots__ = ("_index", "raw")

    def __init__(self, raw: RawHeaders) -> None:
        self.raw = raw
        self._index: dict[str, list[str]] | None = None

    def _build(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for name, value in self.raw:
            index.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        self._index = index
        return index

    def __getitem__(self, name: str) -> str:
        index = self._index if self._index is not None else self._build()
        return index[name.lower()][0]

    def __contains__(self, name: object) -> bool:
        index = self._index if self._index is not None else self._build()
        return isinstance(name, str) and name.lower() in index

    def __iter__(self) -> Iterator[str]:
        index = self._index if self._index is not None else self._build()
        return iter(index)

    def __len__(self) -> int:
        index = self._index if self._index is not None else self._build()
        return len(index)

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of ``name``, or ``default``."""
        values = self.get_all(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in the order received (empty when absent)."""
        if self._index is not None:
            return list(self._index.get(name.lower(), ()))
        # Most requests look up a handful of names: scanning the raw list for one is
        # cheaper than decoding every header into the index.
        target = name.lower().encode("latin-1")
        return [
            value.decode("latin-1")
            for key, value in self.raw
            if key == target or (not key.islower() and key.lower() == target)
        ]

    def get_merged(self, name: str) -> list[str]:
        """Every value of ``name`` under any spelling with ``_`` for ``-``, in the order received.

        Django, asgiref's and a2wsgi's WSGI bridges and CGI-style servers turn both
        ``X-Mode`` and ``X_Mode`` into ``HTTP_X_MODE`` (values joined): for an app
        behind them they are one header.
        """
        if "-" not in name and "_" not in name:
            return self.get_all(name)
        target = name.lower().replace("_", "-").encode("latin-1")
        return [
            value.decode("latin-1")
            for key, value in self.raw
            if key.lower().replace(b"_", b"-") == target
        ]

    def get_single(self, name: str, *spellings: str) -> str | None:
        """The one value of ``name`` (or of its other ``spellings``, which count as the
        same field); a header sent twice is a :class:`BadRequest`."""
        values = self.get_all(name)
        for spelling in spellings:
            values += self.get_all(spelling)
        if not values:
            return None
        if len(values) > 1:
            raise BadRequest(
                f"The {name} header is sent more than once.", reason=f"duplicate {name} header"
            )
        return values[0]

    def __repr__(self) -> str:
        return f"Headers({len(self.raw)} fields)"


__all__ = ["Headers", "RawHeaders"]
