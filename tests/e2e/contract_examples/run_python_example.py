"""Run the contract's Python example against a live orchestrator.

The example file is the contract's text unchanged. Its two placeholders, the URL
``'http://localhost:9090'`` and ``'your-jwt-token'``, are the only things replaced
(in memory, each exactly once) by the live URL and a token obtained by login. Then
the example's own ``get_task_status`` reads the task it created.

Usage: run_python_example.py BASE_URL TOKEN; prints the example's output, then one
line ``RESULT <json>`` with the submission and the status answers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXAMPLE = Path(__file__).with_name("python_sdk_example.py")
PLACEHOLDERS = ("'http://localhost:9090'", "'your-jwt-token'")


def main() -> None:
    base_url, token = sys.argv[1], sys.argv[2]
    source = EXAMPLE.read_text()
    for placeholder, value in zip(PLACEHOLDERS, (base_url, token), strict=True):
        if source.count(placeholder) != 1:
            raise SystemExit(f"placeholder {placeholder} not found exactly once")
        source = source.replace(placeholder, repr(value))
    namespace: dict[str, object] = {"__name__": "__contract_example__"}
    exec(compile(source, str(EXAMPLE), "exec"), namespace)  # noqa: S102 - our own file
    client, result = namespace["client"], namespace["result"]
    status = client.get_task_status(result["data"])  # type: ignore[attr-defined,index]
    print("RESULT " + json.dumps({"result": result, "status": status}), flush=True)


if __name__ == "__main__":
    main()
