"""One console's bounded backlog of events not yet written to its socket.

Pure. Events wait here in seq order between the feed (which pushes) and the
console's writer (which takes). A unit's newer position replaces its older
one still waiting (conflation, as market-data feeds do), so a console that
falls behind gets fewer, fresher positions rather than a growing queue;
everything else is kept, because an incident or dispatch change is never
superseded by a later one the way a position is.
"""

from __future__ import annotations

from command.feed_protocol import Event

MOVED = "unit.moved"


class Overflow(Exception):
    """More events waiting than the console's limit: it is too slow."""


class ClientBuffer:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        # Insertion order is seq order: the feed publishes in seq order.
        self._events: dict[int, Event] = {}
        self._moved: dict[str, int] = {}  # unit id -> seq of its waiting position
        self._urgent = 0  # waiting events that are not positions
        self.conflated = 0

    def __len__(self) -> int:
        return len(self._events)

    @property
    def urgent(self) -> bool:
        """Is anything other than positions waiting? Those are sent without delay."""
        return self._urgent > 0

    @property
    def positions(self) -> bool:
        """Is any unit's position waiting? Those are sent at most every so often."""
        return bool(self._moved)

    def push(self, event: Event, *, conflate: bool = True) -> None:
        """Add an event (seq order).

        Raises:
            Overflow: the limit is reached.
        """
        if event.name == MOVED and event.unit_id is not None:
            older = self._moved.get(event.unit_id)
            if older is not None and conflate:
                del self._events[older]
                self.conflated += 1
            self._moved[event.unit_id] = event.seq
        else:
            self._urgent += 1
        if len(self._events) >= self._limit:
            raise Overflow
        self._events[event.seq] = event

    def take(self) -> list[Event]:
        """Everything waiting, in seq order, leaving the buffer empty."""
        events = list(self._events.values())
        self.clear()
        return events

    def clear(self) -> None:
        self._events.clear()
        self._moved.clear()
        self._urgent = 0
