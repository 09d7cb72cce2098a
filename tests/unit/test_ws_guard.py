"""Who may open the feed, and how fast a console may talk."""

from __future__ import annotations

from command.ws_guard import FrameBudget, origin_allowed


def test_the_servers_own_origin_and_listed_ones_are_allowed() -> None:
    assert origin_allowed("http://cc.example:8080", "cc.example:8080", frozenset())
    assert origin_allowed("https://CC.example", "cc.example", frozenset())
    assert origin_allowed("https://wall.example", "cc.example", frozenset({"https://wall.example"}))
    # Not a browser: no Origin, so no cookie to ride on; a token is required anyway.
    assert origin_allowed(None, "cc.example", frozenset())


def test_other_origins_are_refused() -> None:
    assert not origin_allowed("https://evil.example", "cc.example", frozenset())
    assert not origin_allowed("http://cc.example:8081", "cc.example:8080", frozenset())
    assert not origin_allowed("null", "cc.example", frozenset())
    assert not origin_allowed("file://cc.example", "cc.example", frozenset())
    assert not origin_allowed("https://cc.example", None, frozenset())


def test_the_frame_budget_allows_bursts_then_the_steady_rate() -> None:
    budget = FrameBudget(rate=5, burst=3)
    assert [budget.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not budget.take(0.1)  # half a frame earned
    assert budget.take(0.2)
    assert budget.take(10.0) and budget.take(10.0) and budget.take(10.0) and not budget.take(10.0)
