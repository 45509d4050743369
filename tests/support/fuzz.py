"""Property-based API runs, used by ``tests/e2e/test_schemathesis_*.py``: schemathesis
generates requests from each running service's own ``/openapi.json`` (positive and
negative data, fixed seed, bounded examples, authenticated with a token minted by the
test) and checks every response: no server error, a documented status code, content
type, headers and body matching the documented schema, invalid data rejected.

Each service run gets its own control center (and orchestrator), so that the random
policies and users schemathesis creates never affect other tests; the two runs are two
test files so that the two test workers run them at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SEED = 20260101
POSITIVE_EXAMPLES = 25
NEGATIVE_EXAMPLES = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Operations that would end the run's own session (logout; key rotation retires the
# key that signed the token after a few runs) or that are not plain HTTP.
SKIP = {("POST", "/auth/logout"), ("POST", "/keys/rotate"), ("GET", "/ws")}
# Operations only a service token may call.
SERVICE_ONLY = {"/audit/events", "/auth/introspect"}


@dataclass
class RunReport:
    service: str
    cases: int = 0
    operations: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    by_operation: dict[str, int] = field(default_factory=dict)


def run_schemathesis(
    service: str, base_url: str, token: str, service_token: str | None = None
) -> RunReport:
    spec = requests.get(f"{base_url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    schema.validate()  # the document itself is valid OpenAPI
    report = RunReport(service)
    session = requests.Session()
    try:
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                report.failures.append(f"invalid operation in the spec: {result.err()}")
                continue
            operation = result.ok()
            if (operation.method.upper(), operation.path) in SKIP:
                continue
            report.operations += 1
            bearer = service_token if operation.path in SERVICE_ONLY and service_token else token
            headers = {"Authorization": f"Bearer {bearer}"}
            for mode, examples in (
                (schemathesis.GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
                (schemathesis.GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
            ):
                _run_operation(report, operation, mode, examples, base_url, session, headers)
    finally:
        session.close()
    return report


def _run_operation(
    report: RunReport,
    operation: Any,
    mode: schemathesis.GenerationMode,
    examples: int,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str],
) -> None:
    checks = CHECKS + ([negative_data_rejection] if mode.is_negative else [])

    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=10)
        report.cases += 1
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        key = f"{operation.method.upper()} {operation.path} {response.status_code}"
        report.by_operation[key] = report.by_operation.get(key, 0) + 1
        case.validate_response(response, checks=checks, headers=headers)

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        pass  # e.g. no negative data possible for an operation without inputs
    except Exception as exc:  # keep going: report every failing operation at once
        report.failures.append(f"{operation.method.upper()} {operation.path} [{mode}]: {exc}")


def assert_clean(report: RunReport) -> None:
    print(
        f"\nschemathesis {report.service}: {report.cases} cases over "
        f"{report.operations} operations; statuses {dict(sorted(report.statuses.items()))}"
    )
    assert report.cases > 0
    assert not report.failures, "\n\n".join(report.failures)
