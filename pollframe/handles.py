"""Handle: a callback scheduled on the loop, kept to cancel it or to ask whether it is still pending.

``call_soon`` returns a plain :class:`Handle`; the timers (``call_later``,
``call_at``, ``call_every``) return a :class:`~pollframe.timers.Timer`, a
Handle with a deadline, as asyncio splits ``Handle`` and ``TimerHandle``.
``cancelled`` means only that ``cancel()`` was called; ``pending`` says
whether the callback will still run (a one-shot that ran is neither).
Handles can be weakly referenced, so a table of them never keeps a
finished callback alive.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = ["Handle"]


class Handle:
    """A callback queued to run on the next pass; ``cancel()`` it before then to stop it."""

    __slots__ = ("callback", "args", "cancelled", "__weakref__")

    def __init__(self, callback: Callable[..., Any], args: tuple) -> None:
        # Both are dropped once the call ran or was cancelled: a handle kept by
        # the application does not keep the callback and its arguments alive.
        self.callback: Optional[Callable[..., Any]] = callback
        self.args: Optional[tuple] = args
        self.cancelled = False

    @property
    def pending(self) -> bool:
        """Whether the callback will still run: neither cancelled nor (for a one-shot) run yet."""
        return self.callback is not None

    def cancel(self) -> None:
        """Stop the call from running; cancelling twice, or after it ran, is harmless."""
        if not self.cancelled:
            self.cancelled = True
            self.callback = self.args = None

    def _state(self) -> str:
        return "cancelled" if self.cancelled else ("pending" if self.callback is not None else "done")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state()}>"
