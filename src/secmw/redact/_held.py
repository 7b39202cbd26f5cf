"""Text a stream holds back until it can be judged (an event, a line, a document)."""

from __future__ import annotations


class Held:
    """Pieces held as they came and joined once, when taken.

    Appending each piece to one string re-copies all that is held every time: a
    body sent in many small pieces would cost quadratic time.
    """

    __slots__ = ("_parts", "size")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.size = 0

    def __bool__(self) -> bool:
        return self.size > 0

    def add(self, piece: str) -> None:
        """Hold ``piece`` after what is held."""
        if piece:
            self._parts.append(piece)
            self.size += len(piece)

    def tail(self, size: int) -> str:
        """The last ``size`` held characters, however small the pieces they came in."""
        parts: list[str] = []
        have = 0
        for piece in reversed(self._parts):
            parts.append(piece[-(size - have) :])
            have += len(parts[-1])
            if have >= size:
                break
        return "".join(reversed(parts))

    def take(self) -> str:
        """Everything held, joined; nothing is held after."""
        text = "".join(self._parts)
        self._parts, self.size = [], 0
        return text


__all__ = ["Held"]
