"""Flat methods that forward to a namespace: ``get_task = delegate("tasks", TasksAPI.get)``
gives the client a ``get_task`` with exactly the signature, return type and docstring
of ``client.tasks.get``, so the flat API and the namespaces cannot drift apart."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
N = TypeVar("N")


def delegate(
    namespace: str, method: Callable[Concatenate[N, P], R]
) -> Callable[Concatenate[Any, P], R]:
    """A method calling ``self.<namespace>.<method name>(...)``."""
    name = method.__name__

    @functools.wraps(method)
    def forward(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        target: Callable[P, R] = getattr(getattr(self, namespace), name)
        return target(*args, **kwargs)

    return forward
