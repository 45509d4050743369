"""Submission → task spec, as DESIGN §5's table says. Pure code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..engine import Compensation, TaskSpec


def _common_args(body: Mapping[str, Any]) -> tuple[str, ...]:
    args = ["--infra", body["infra"], "--settings", body["settings"]]
    if body.get("check_mode"):
        args.append("--check")
    if body.get("wait"):
        args.append("--wait")
    return tuple(args)


def _identity(body: Mapping[str, Any]) -> tuple[str, ...]:
    return ("--infra", body["infra"], "--settings", body["settings"])


def servers_spec(body: Mapping[str, Any]) -> TaskSpec:
    return TaskSpec(
        name="create_servers",
        subcommand=("servers", "create"),
        args=_common_args(body),
        kind="servers.create",
        compensation=Compensation(("servers", "delete"), _identity(body)),
    )


def taskserv_spec(body: Mapping[str, Any]) -> TaskSpec:
    op, name = body["operation"], body["taskserv"]
    return TaskSpec(
        name=f"{op}_taskserv",
        subcommand=("taskserv", op),
        args=(name, *_common_args(body)),
        kind=f"taskserv.{op}",
        compensation=Compensation(("taskserv", "delete"), (name, *_identity(body)))
        if op == "create"
        else None,
    )


def cluster_spec(body: Mapping[str, Any]) -> TaskSpec:
    op, name = body["operation"], body["cluster_type"]
    return TaskSpec(
        name=f"{op}_cluster",
        subcommand=("cluster", op),
        args=(name, *_common_args(body)),
        kind=f"cluster.{op}",
        compensation=Compensation(("cluster", "delete"), (name, *_identity(body)))
        if op == "create"
        else None,
    )
