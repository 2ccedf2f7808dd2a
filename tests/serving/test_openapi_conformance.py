"""schemathesis against the API's own OpenAPI document, over a real server on the seeded world:
every operation, generated valid and invalid input; no 500, and every answer (status, headers,
content type, body) is one the document declares. The API has no links between operations, so
there is no stateful sequence to walk.

Driven by hand (operations -> hypothesis strategies) rather than by schemathesis's pytest plugin,
whose fixture support does not work with pytest 9.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from layout_seed import World
from serving_harness import running_app

from clout.settings import Settings

EXAMPLES = 40  # per operation and generation mode
# Left out: "schema-valid request rejected". One rule spans two parameters (`platform` only with
# board=score, else 422), which OpenAPI 3.0 cannot state; every other check runs.
positive_data_acceptance = schemathesis.checks.positive_data_acceptance


def test_every_operation_conforms_and_never_fails(settings: Settings, world: World) -> None:
    with running_app(settings.replace(serve_rate_limit=0)) as client:
        base = str(client.base_url)
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10
        for operation in operations:
            check_operation(operation, base)


def check_operation(operation: schemathesis.APIOperation, base: str) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base, excluded_checks=[positive_data_acceptance])

    conforms()
