#!/usr/bin/env python3
"""PROVISIONING CLI SIMULATOR — dev and test tooling only, never a production default.

Stands in for the real provisioning CLI (``PROVISIONING_CLI``) and accepts DESIGN §5's
argv forms::

    servers  create|delete  --infra I --settings S [--check] [--wait]
    servers  create|delete  --provider P --name N --plan L --zone Z
    taskserv <op> <taskserv> (--infra I --settings S | --provider P) [--check] [--wait]
    cluster  <op> <type>     (--infra I --settings S | --provider P) [--check] [--wait]

It prints ``::progress <pct> <step>`` lines and output over a configurable duration and
fails on demand:

- ``PROVISIONING_SIM_DURATION`` seconds (default 1.0); a name containing ``sleep<N>``
  (e.g. infra ``prod-sleep30``) runs N seconds instead.
- A name containing ``fail`` (e.g. ``web-fail``), or listed in ``PROVISIONING_SIM_FAIL``
  (comma-separated; ``*`` fails everything), exits 1 with an error on stderr.
- ``PROVISIONING_SIM_FAIL_ONCE`` (comma-separated names) fails a run naming one of them
  once: the first such run creates a marker file in ``PROVISIONING_SIM_STATE_DIR``
  (required with it) and fails; later runs find the marker and succeed.
- ``PROVISIONING_SIM_LOG``: a file to which every invocation appends one JSON line
  (``task`` = ``PROVISIONING_TASK_ID``, ``argv``, ``result``: ``start`` then ``ok`` or
  ``failed``), so tests judge what really ran.
- ``PROVISIONING_SIM_STEPS`` progress steps (default 4).
SIGTERM ends it with exit code 143 after printing a line."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time

NOUNS = {"servers", "taskserv", "cluster"}
VERBS = {"create", "delete", "update"}
_SLEEP = re.compile(r"sleep(\d+(?:\.\d+)?)")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="provisioning-simulator", add_help=True)
    parser.add_argument("noun", choices=sorted(NOUNS))
    parser.add_argument("verb", choices=sorted(VERBS))
    parser.add_argument("target", nargs="?")
    for flag in ("--infra", "--settings", "--provider", "--name", "--plan", "--zone"):
        parser.add_argument(flag)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--wait", action="store_true")
    args = parser.parse_args(argv)
    if args.noun != "servers" and not args.target:
        parser.error(f"{args.noun} {args.verb} needs a name")
    if not (args.infra or args.provider):
        parser.error("either --infra or --provider is required")
    return args


def names(args: argparse.Namespace) -> list[str]:
    return [n for n in (args.target, args.infra, args.name, args.provider) if n]


def duration(args: argparse.Namespace) -> float:
    for name in names(args):
        match = _SLEEP.search(name)
        if match:
            return float(match.group(1))
    return float(os.environ.get("PROVISIONING_SIM_DURATION", "1.0"))


def should_fail(args: argparse.Namespace) -> bool:
    listed = {
        n.strip() for n in os.environ.get("PROVISIONING_SIM_FAIL", "").split(",") if n.strip()
    }
    return "*" in listed or any("fail" in n or n in listed for n in names(args))


def _listed(var: str) -> set[str]:
    return {n.strip() for n in os.environ.get(var, "").split(",") if n.strip()}


def fail_once(args: argparse.Namespace) -> bool:
    """True for the first run naming a ``PROVISIONING_SIM_FAIL_ONCE`` name (its marker
    file is created exclusively, so exactly one run fails even when runs race)."""
    listed = _listed("PROVISIONING_SIM_FAIL_ONCE")
    state_dir = os.environ.get("PROVISIONING_SIM_STATE_DIR")
    hit = sorted(n for n in names(args) if n in listed)
    if not hit or not state_dir:
        return False
    marker = os.path.join(state_dir, f"failed-once-{hit[0]}")
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def record(argv: list[str], result: str) -> None:
    """Append one invocation line to ``PROVISIONING_SIM_LOG`` (when set)."""
    path = os.environ.get("PROVISIONING_SIM_LOG")
    if not path:
        return
    line = {"task": os.environ.get("PROVISIONING_TASK_ID", ""), "argv": argv, "result": result}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def main(argv: list[str]) -> int:
    code = run(argv)
    record(argv, "ok" if code == 0 else "failed")
    return code


def run(argv: list[str]) -> int:
    def on_term(signum: int, frame: object) -> None:
        print("simulator: interrupted", flush=True)
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    args = parse(argv)
    record(argv, "start")
    failing = should_fail(args) or fail_once(args)
    subject = " ".join(names(args))
    steps = max(1, int(os.environ.get("PROVISIONING_SIM_STEPS", "4")))
    total = duration(args)
    mode = " (check mode)" if args.check else ""
    print(f"[simulator] {args.noun} {args.verb} {subject}{mode}", flush=True)
    for i in range(steps):
        pct = round(100 * i / steps, 1)
        print(f"::progress {pct} Step {i + 1}/{steps}: {args.verb} {args.noun}", flush=True)
        print(f"step {i + 1} of {steps} for {subject}", flush=True)
        time.sleep(total / steps)
        if failing and i == steps // 2:
            print(
                f"simulator: {args.noun} {args.verb} failed for {subject}",
                file=sys.stderr,
                flush=True,
            )
            return 1
    print("::progress 100 Done", flush=True)
    print(f"Successfully {args.verb}d {args.noun} for {subject}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
