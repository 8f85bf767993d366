"""What the ledger raises: every message names the file version or manifest at fault."""

from __future__ import annotations


class LedgerError(RuntimeError):
    """The ledger could not complete a read or write; the message names the item at fault."""


class GroupGoneError(LedgerError):
    """A group changed while being written and is gone: every file it held was requeued or replayed meanwhile."""


class IllegalTransitionError(LedgerError):
    """A state change was asked for that the state machine does not allow from the current state."""

    def __init__(self, what: str, current: str | None, wanted: str) -> None:
        super().__init__(f"{what}: cannot move from {current or 'absent'} to {wanted}")
        self.current = current
        self.wanted = wanted
