"""Integration-test hygiene: a test fails on an unhandled loop exception or a lingering task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.helpers import end_sessions


@pytest.fixture(autouse=True)
async def _loop_hygiene(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    before = asyncio.all_tasks(loop)
    yield
    loop.set_exception_handler(previous)
    await asyncio.to_thread(end_sessions)
    # Give cancelled tasks one turn of the loop to finish unwinding.
    await asyncio.sleep(0)
    lingering = [
        t for t in asyncio.all_tasks(loop) - before if t is not asyncio.current_task() and not t.done()
    ]
    if errors:
        first = errors[0]
        pytest.fail(f"unhandled loop exception: {first.get('message')} {first.get('exception')!r}")
    if lingering:
        pytest.fail(f"tasks left running after the test: {[t.get_name() for t in lingering]}")
