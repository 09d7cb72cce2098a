"""Scenario logic of the demo simulator: what sensors and units publish, when.

Pure module (sans-I/O): it reads no clock and never sleeps. The adapter in
``command/simulator.py`` calls ``Simulation.step(now)``, publishes the
returned messages, and sleeps until ``Simulation.next_deadline(now)``.

The scenario:

* Most sensors are quiet. Now and then an *event* starts at one sensor: it
  raises a short burst of alarms over about a minute, escalating in
  severity, and a few nearby sensors whose kinds fit the event (smoke and
  air quality around a fire, structural monitors around an earthquake) join
  in. A smaller share of alarms are isolated, low-severity one-offs, the
  noise every real sensor network has.
* Units drift on correlated random walks that are pulled back towards home,
  each publishing its position every few seconds at QoS 0.

Alarm payloads follow the MQTT alarm contract (design section 3). Alarm ids
embed a run id taken from the start time, so a restarted simulator never
reuses an id: the server drops a redelivered (sensor id, alarm id) pair, and a
reused id would silently vanish.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from command.demo_city import EARTH_RADIUS_M, distance_m, sensor_alarm_kinds

#: CAP 1.2 severities, in rising order (``Unknown`` is used only for noise).
SEVERITIES: tuple[str, ...] = ("Minor", "Moderate", "Severe", "Extreme")

ALARM_QOS = 1
POSITION_QOS = 0  # positions are superseded every few seconds; losing one is fine

# Event shape. The alarm rate is split between events and isolated noise;
# the event start rate is derived from the expected alarms per event so the
# configured rate holds on average.
_EVENT_SHARE = 0.8
_PRIMARY_ALARMS = (3, 8)  # randint bounds: alarms from the sensor that starts it
_NEIGHBOURS = (0, 4)  # randint bounds: neighbours that join
_NEIGHBOUR_ALARMS = (1, 3)  # randint bounds: alarms per joining neighbour
_EVENT_SPAN_S = 60.0
_NEIGHBOUR_RADIUS_M = 1_000.0

# Sensor kinds weighted by how often they start an event: earthquakes are
# rarer than smoke.
_EVENT_WEIGHT = {
    "smoke": 1.0,
    "gas": 1.0,
    "water_level": 1.0,
    "air_quality": 1.0,
    "structural": 0.5,
    "seismic": 0.2,
}

# (unit, low, high) of the reading at the start and at the peak of an event.
_READINGS = {
    "water_level": ("m", 0.4, 2.5),
    "gas": ("%LEL", 10.0, 80.0),
    "air_quality": ("ug/m3", 75.0, 500.0),
}

_MESSAGES = {
    "fire": "Fire detected",
    "smoke": "Smoke density above threshold",
    "gas_leak": "Combustible gas concentration above threshold",
    "hazmat": "Hazardous substance detected",
    "water_level": "Water level above warning line",
    "flood": "Flooding detected",
    "earthquake": "Ground motion above threshold",
    "landslide": "Slope displacement detected",
    "structure_collapse": "Structural displacement above threshold",
    "air_quality": "Air quality index above threshold",
}

# Cruise speeds in m/s by unit type: urban driving with lights off, people
# on foot for volunteers.
_CRUISE_MPS = {
    "fire_engine": 11.0,
    "ambulance": 13.0,
    "rescue_squad": 11.0,
    "hazmat_team": 10.0,
    "police": 12.0,
    "public_health_team": 10.0,
    "utility_crew": 10.0,
    "volunteer_team": 1.4,
}
_HOME_RADIUS_M = 1_500.0
_MAX_CATCH_UP = timedelta(seconds=30)  # beyond this a unit's heading is pulled towards home


def cruise_speed(unit_type: str) -> float:
    """Return a plausible cruise speed in m/s for a unit type (default 10)."""
    return _CRUISE_MPS.get(unit_type, 10.0)


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 in UTC with millisecond precision.

    Raises:
        ValueError: ``moment`` is naive.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a naive datetime has no offset; pass an aware one")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class SimSensor:
    """A sensor as the simulator needs it."""

    id: str
    kind: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class SimUnit:
    """A unit as the simulator needs it; ``speed`` is its cruise speed in m/s."""

    id: str
    lat: float
    lon: float
    speed: float

    def __post_init__(self) -> None:
        if not self.speed >= 0:  # also rejects NaN
            raise ValueError(f"{self.id}: speed must be >= 0")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message to publish."""

    topic: str
    payload: bytes
    qos: int


@dataclass(frozen=True, slots=True)
class _PendingAlarm:
    sensor: SimSensor
    kind: str
    severity: str
    # Fraction of the way to the event's peak, for readings that rise.
    progress: float


@dataclass(slots=True)
class _UnitState:
    unit: SimUnit
    lat: float
    lon: float
    heading: float  # degrees clockwise from north
    parked: bool
    next_at: datetime
    last_at: datetime


@dataclass(slots=True)
class _Stats:
    alarms: int = 0
    positions: int = 0
    events: int = 0


def _dumps(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class _Clock:
    """Next arrival of a Poisson process, or None when its rate is zero."""

    rate: float
    next_at: datetime | None = field(default=None)

    def arm(self, rng: random.Random, after: datetime) -> None:
        if self.rate <= 0:
            self.next_at = None
            return
        # expovariate can return 0.0; a floor keeps time moving forward.
        gap = max(rng.expovariate(self.rate), 1e-6)
        self.next_at = after + timedelta(seconds=gap)


class Simulation:
    """Sensors and units of a city, stepped by the caller's clock.

    Args:
        sensors: sensors that may raise alarms.
        units: units that publish positions.
        rng: the only source of randomness; seed it for a reproducible run.
        now: start time (aware).
        rate: average alarms per second over all sensors (0 for none).
        position_interval_s: how often each unit publishes its position.
        min_tick_s: the shortest gap ``next_deadline`` returns; it lets a
            high alarm rate be published in batches instead of one wake-up
            per alarm. Alarms are stamped with the time they are emitted, so
            batching never makes a ``time`` lie.
        run_id: embedded in alarm ids; defaults to the start time in ms, in
            hex, so ids are unique across runs.

    Raises:
        ValueError: ``now`` is naive, or a rate or interval is negative.
    """

    def __init__(
        self,
        sensors: Sequence[SimSensor],
        units: Sequence[SimUnit],
        rng: random.Random,
        now: datetime,
        rate: float = 1.0,
        position_interval_s: float = 5.0,
        min_tick_s: float = 0.01,
        run_id: str | None = None,
    ) -> None:
        rfc3339(now)  # validates awareness
        if not rate >= 0:
            raise ValueError("rate must be >= 0")
        if not position_interval_s > 0:
            raise ValueError("position_interval_s must be > 0")
        if not min_tick_s >= 0:
            raise ValueError("min_tick_s must be >= 0")
        self._sensors = tuple(sensors)
        self._rng = rng
        self._interval = timedelta(seconds=position_interval_s)
        self._min_tick = timedelta(seconds=min_tick_s)
        self._run_id = run_id if run_id is not None else format(int(now.timestamp() * 1000), "x")
        self._alarm_counter: dict[str, int] = {}
        self._queue: list[tuple[datetime, int, _PendingAlarm]] = []
        self._queue_seq = 0
        self.stats = _Stats()

        # A grid of cells about one neighbour radius wide, so finding an
        # event's neighbours looks at nine cells, not at every sensor: at
        # benchmark rates that is the difference between cheap and not.
        mean_lat = sum(s.lat for s in self._sensors) / len(self._sensors) if self._sensors else 0.0
        self._cell_lat = math.degrees(_NEIGHBOUR_RADIUS_M / EARTH_RADIUS_M)
        self._cell_lon = self._cell_lat / max(math.cos(math.radians(mean_lat)), 0.01)
        self._grid: dict[tuple[int, int], list[SimSensor]] = {}
        for s in self._sensors:
            self._grid.setdefault(self._cell(s.lat, s.lon), []).append(s)

        weights = [_EVENT_WEIGHT.get(s.kind, 0.5) for s in self._sensors]
        self._cum_weights: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            self._cum_weights.append(total)

        has_sensors = bool(self._sensors)
        per_event = self._expected_alarms_per_event(weights)
        self._events = _Clock(rate * _EVENT_SHARE / per_event if has_sensors else 0.0)
        self._noise = _Clock(rate * (1 - _EVENT_SHARE) if has_sensors else 0.0)
        # Start as if events had been arriving for one event span already,
        # keeping only their alarms still to come: otherwise the rate would
        # ramp up over the first minute, which skews short benchmarks.
        self._events.arm(rng, now - timedelta(seconds=_EVENT_SPAN_S))
        while self._events.next_at is not None and self._events.next_at < now:
            self._start_event(self._events.next_at)
            self._events.arm(rng, self._events.next_at)
        self._queue = [entry for entry in self._queue if entry[0] >= now]
        heapq.heapify(self._queue)
        self.stats.events = 0  # count only events started from now on
        self._noise.arm(rng, now)

        # Stagger the first reports over one interval so that sixty units do
        # not all publish in the same millisecond.
        self._units = [
            _UnitState(
                unit=u,
                lat=u.lat,
                lon=u.lon,
                heading=rng.uniform(0, 360),
                parked=rng.random() < 0.5,
                next_at=now + self._interval * rng.random(),
                last_at=now,
            )
            for u in units
        ]

    # --- public API -------------------------------------------------------

    def step(self, now: datetime) -> list[Outgoing]:
        """Advance to ``now`` and return the messages due by then.

        Alarms are stamped with ``now``, the time they are handed over for
        publishing. Call with non-decreasing times; an earlier ``now``
        returns nothing new.

        Raises:
            ValueError: ``now`` is naive.
        """
        stamp = rfc3339(now)
        out: list[Outgoing] = []
        for clock in (self._events, self._noise):
            # A caller that stalled (a suspended laptop) would otherwise get
            # hours of alarms in one burst; skip what is long overdue.
            if clock.next_at is not None and clock.next_at < now - _MAX_CATCH_UP:
                clock.arm(self._rng, now - _MAX_CATCH_UP)
        while self._events.next_at is not None and self._events.next_at <= now:
            self._start_event(self._events.next_at)
            self._events.arm(self._rng, self._events.next_at)
        while self._noise.next_at is not None and self._noise.next_at <= now:
            self._schedule(self._noise.next_at, self._noise_alarm())
            self._noise.arm(self._rng, self._noise.next_at)
        while self._queue and self._queue[0][0] <= now:
            _, _, pending = heapq.heappop(self._queue)
            out.append(self._alarm_message(pending, stamp))
        for state in self._units:
            if state.next_at <= now:
                out.append(self._move(state, now, stamp))
        return out

    def next_deadline(self, now: datetime) -> datetime:
        """When ``step`` next has something to do: never earlier than now + min tick."""
        candidates = [s.next_at for s in self._units]
        if self._queue:
            candidates.append(self._queue[0][0])
        for clock in (self._events, self._noise):
            if clock.next_at is not None:
                candidates.append(clock.next_at)
        floor = now + max(self._min_tick, timedelta(microseconds=1))
        if not candidates:
            # Nothing will ever happen; wake up now and then anyway so the
            # caller keeps checking its stop signal.
            return now + timedelta(seconds=1)
        return max(min(candidates), floor)

    # --- alarms -----------------------------------------------------------

    def _expected_alarms_per_event(self, weights: Sequence[float]) -> float:
        """Mean alarms per event, counting only the neighbours that exist.

        Isolated sensors get fewer neighbours than drawn; ignoring that
        would make the real alarm rate fall short of the configured one.
        """
        if not self._sensors:
            return 1.0
        lo, hi = _NEIGHBOURS
        per_neighbour = sum(_NEIGHBOUR_ALARMS) / 2
        total = 0.0
        for sensor, weight in zip(self._sensors, weights, strict=True):
            available = len(self._neighbours(sensor, sensor_alarm_kinds(sensor.kind)))
            joined = sum(min(w, available) for w in range(lo, hi + 1)) / (hi - lo + 1)
            total += weight * (sum(_PRIMARY_ALARMS) / 2 + joined * per_neighbour)
        return total / sum(weights)

    def _schedule(self, at: datetime, pending: _PendingAlarm) -> None:
        # The sequence number breaks ties so heapq never compares alarms.
        self._queue_seq += 1
        heapq.heappush(self._queue, (at, self._queue_seq, pending))

    def _pick_sensor(self) -> SimSensor:
        x = self._rng.random() * self._cum_weights[-1]
        lo, hi = 0, len(self._cum_weights) - 1
        while lo < hi:  # first cumulative weight above x
            mid = (lo + hi) // 2
            if self._cum_weights[mid] > x:
                hi = mid
            else:
                lo = mid + 1
        return self._sensors[lo]

    def _noise_alarm(self) -> _PendingAlarm:
        sensor = self._sensors[self._rng.randrange(len(self._sensors))]
        severity = self._rng.choices(("Minor", "Moderate", "Unknown"), weights=(70, 25, 5))[0]
        return _PendingAlarm(sensor, sensor_alarm_kinds(sensor.kind)[0], severity, 0.0)

    def _start_event(self, at: datetime) -> None:
        rng = self._rng
        self.stats.events += 1
        primary = self._pick_sensor()
        family = sensor_alarm_kinds(primary.kind)
        kind = family[0] if rng.random() < 0.7 or len(family) == 1 else rng.choice(family[1:])
        peak = rng.choices((1, 2, 3), weights=(50, 40, 10))[0]  # index into SEVERITIES

        n = rng.randint(*_PRIMARY_ALARMS)
        offsets = [0.0, *sorted(rng.uniform(0, _EVENT_SPAN_S) for _ in range(n - 1))]
        for i, offset in enumerate(offsets):
            progress = i / (n - 1) if n > 1 else 1.0
            # Escalates from Minor towards the peak as the event develops.
            severity = SEVERITIES[round(progress * peak)]
            pending = _PendingAlarm(primary, kind, severity, progress)
            self._schedule(at + timedelta(seconds=offset), pending)

        wanted = rng.randint(*_NEIGHBOURS)
        for neighbour, nkind in self._neighbours(primary, family)[:wanted]:
            start = rng.uniform(5.0, _EVENT_SPAN_S * 2 / 3)
            for j in range(rng.randint(*_NEIGHBOUR_ALARMS)):
                # Neighbours see the edge of the event: at most one step
                # below its peak.
                severity = SEVERITIES[max(0, peak - (2 if j == 0 else 1))]
                offset = start + j * rng.uniform(3.0, 10.0)
                self._schedule(at + timedelta(seconds=offset), _PendingAlarm(neighbour, nkind, severity, 0.5))

    def _cell(self, lat: float, lon: float) -> tuple[int, int]:
        return math.floor(lat / self._cell_lat), math.floor(lon / self._cell_lon)

    def _neighbours(self, primary: SimSensor, family: tuple[str, ...]) -> list[tuple[SimSensor, str]]:
        """Nearby sensors whose kinds fit the event, nearest first, with their kind."""
        found: list[tuple[float, SimSensor, str]] = []
        row, col = self._cell(primary.lat, primary.lon)
        nearby = (
            s for dr in (-1, 0, 1) for dc in (-1, 0, 1) for s in self._grid.get((row + dr, col + dc), ())
        )
        for s in nearby:
            if s.id == primary.id:
                continue
            fitting = [k for k in sensor_alarm_kinds(s.kind) if k in family]
            if not fitting:
                continue
            d = distance_m(primary.lon, primary.lat, s.lon, s.lat)
            if d <= _NEIGHBOUR_RADIUS_M:
                found.append((d, s, fitting[0]))
        found.sort(key=lambda t: (t[0], t[1].id))
        return [(s, k) for _, s, k in found]

    def _alarm_message(self, pending: _PendingAlarm, stamp: str) -> Outgoing:
        sensor = pending.sensor
        n = self._alarm_counter.get(sensor.id, 0) + 1
        self._alarm_counter[sensor.id] = n
        payload: dict[str, object] = {
            "id": f"{self._run_id}-{n}",
            "kind": pending.kind,
            "severity": pending.severity,
            "time": stamp,
        }
        # lat/lon are optional for registered sensors; sending them on some
        # alarms exercises both paths of the server.
        if self._rng.random() < 0.4:
            payload["lat"] = round(sensor.lat, 6)
            payload["lon"] = round(sensor.lon, 6)
        reading = _READINGS.get(sensor.kind)
        if reading is not None:
            unit, low, high = reading
            noise = self._rng.gauss(0.0, (high - low) * 0.03)
            value = low + pending.progress * (high - low) + noise
            payload["value"] = round(max(value, 0.0), 2)
            payload["unit"] = unit
        message = _MESSAGES.get(pending.kind)
        if message is not None:
            payload["message"] = message
        self.stats.alarms += 1
        return Outgoing(f"sensors/{sensor.id}/alarm", _dumps(payload), ALARM_QOS)

    # --- units ------------------------------------------------------------

    def _move(self, state: _UnitState, now: datetime, stamp: str) -> Outgoing:
        rng = self._rng
        # Capped so that a stalled caller does not make units teleport.
        elapsed = (now - state.last_at).total_seconds()
        dt = min(max(elapsed, 0.0), 3 * self._interval.total_seconds())
        # Units switch between parked and moving now and then, as real ones
        # do between standby and patrol.
        if rng.random() < 0.05:
            state.parked = not state.parked
        speed = 0.0
        if not state.parked and state.unit.speed > 0:
            speed = state.unit.speed * rng.uniform(0.5, 1.1)
            home_d = distance_m(state.lon, state.lat, state.unit.lon, state.unit.lat)
            if home_d > _HOME_RADIUS_M:
                # Head home, with some wobble, rather than wander off.
                state.heading = _bearing(state.lat, state.lon, state.unit.lat, state.unit.lon)
            state.heading = (state.heading + rng.gauss(0.0, 20.0)) % 360.0
            dist = speed * dt
            h = math.radians(state.heading)
            metres_per_rad_lon = EARTH_RADIUS_M * math.cos(math.radians(state.lat))
            state.lat += math.degrees(dist * math.cos(h) / EARTH_RADIUS_M)
            state.lon += math.degrees(dist * math.sin(h) / metres_per_rad_lon)
        state.last_at = now
        state.next_at = now + self._interval
        self.stats.positions += 1
        payload: dict[str, object] = {
            "lat": round(state.lat, 6),
            "lon": round(state.lon, 6),
            "time": stamp,
            "speed": round(speed, 2),
            "heading": round(state.heading, 1),
        }
        return Outgoing(f"units/{state.unit.id}/position", _dumps(payload), POSITION_QOS)


def _bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing in degrees clockwise from north (flat-earth, city scale)."""
    dx = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    dy = math.radians(lat2 - lat1)
    return math.degrees(math.atan2(dx, dy)) % 360.0
