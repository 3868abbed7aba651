"""Schemathesis hooks for scripts/fuzz.sh: every secured operation is called as the owner of the
fuzzed tenant, with a token fetched by logging in (and fetched again after a 401, since the fuzzer
may well call logout or revoke the session it runs on)."""

import os
import re

import requests
import schemathesis

BASE_URL = os.environ["FUZZ_URL"]
TENANT_HOST = os.environ["FUZZ_HOST"]
EMAIL = os.environ["FUZZ_EMAIL"]
PASSWORD = os.environ["FUZZ_PASSWORD"]


@schemathesis.auth(refresh_interval=600, retry_on=[401])
class OwnerToken:
    def get(self, case, ctx):
        response = requests.post(
            f"{BASE_URL}/api/v1/auth/token",
            headers={"Host": TENANT_HOST},
            json={"email": EMAIL, "password": PASSWORD},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"



UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@schemathesis.hook
def map_body(ctx, body):
    """A new task or document names the project scripts/fuzz.sh created, so it can be created at all. Only a
    well-formed id is replaced: a body meant to be invalid stays invalid."""
    operation = ctx.operation
    if (
        operation is not None
        and operation.method.upper() == "POST"
        and operation.path in ("/api/v1/tasks", "/api/v1/documents")
        and isinstance(body, dict)
        and isinstance(body.get("project_id"), str)
        and UUID.match(body["project_id"])
    ):
        body["project_id"] = os.environ["FUZZ_PROJECT_ID"]
    return body
