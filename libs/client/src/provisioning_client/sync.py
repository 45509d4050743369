"""``SyncProvisioningClient``: the async client driven by a private event loop.

Every coroutine method of :class:`ProvisioningClient` is available with the same
name and arguments and returns its result directly; async iterators (``iter_*``,
``events``) become plain iterators."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from .client import ProvisioningClient

T = TypeVar("T")


async def _next(ait: AsyncIterator[T]) -> T:
    return await ait.__anext__()


class SyncProvisioningClient:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._runner = asyncio.Runner()
        # The aiohttp session binds to the loop it is created on: create the client there.
        self._client: ProvisioningClient = self._runner.run(self._make(args, kwargs))

    @staticmethod
    async def _make(args: tuple[Any, ...], kwargs: dict[str, Any]) -> ProvisioningClient:
        return ProvisioningClient(*args, **kwargs)

    @property
    def client(self) -> ProvisioningClient:
        return self._client

    def __enter__(self) -> SyncProvisioningClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.close()

    def _iterate(self, ait: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._runner.run(_next(ait))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(ait, "aclose", None)
            if aclose is not None:
                self._runner.run(aclose())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if inspect.iscoroutinefunction(attr):

            @functools.wraps(attr)
            def call(*args: Any, **kwargs: Any) -> Any:
                return self._runner.run(attr(*args, **kwargs))

            return call
        if callable(attr):
            return self._wrap_iter(attr)
        return attr

    def _wrap_iter(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            if hasattr(result, "__anext__"):
                return self._iterate(result)
            return result

        return call
