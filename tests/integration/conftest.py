"""Integration-test hygiene (a test fails on an unhandled loop exception or a lingering
task), and a private folder for a test's own services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import end_sessions, service_tempdir


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


@pytest.fixture
def private_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A folder for the test's own PostgreSQL, broker or `emergency up` data, which
    the service accounts can enter; named after the test module, removed afterwards."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with service_tempdir(f"emergency-{module}-") as path:
        yield path
