"""Contract checks: every exchange an adapter makes is held against the official OpenAPI spec.

`ContractChecker` hooks into `marketplaces.http` (see `add_exchange_hook`) and validates each request
the client sent and each reply it received with openapi-core (`marketplaces.spec`). Use it as a
context manager, or through the `contract` fixture of tests/marketplaces/conftest.py, which fails the
test on any violation:

    with ContractChecker() as checker:
        adapter.push_stocks(levels)
    checker.assert_clean()

Replies that the spec cannot describe are not counted against the sandbox: undocumented throttling
and outage statuses (429, 5xx where absent from the spec) and replies deliberately broken by fault
injection (set `check_responses=False` while injecting `malformed_rate`). Sandboxes validate their own
replies too (`/_sandbox/state` -> `spec_violations`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from marketplaces.http import Exchange, add_exchange_hook, remove_exchange_hook
from marketplaces.spec import SPEC_FILES, load_specs


class ContractViolation(AssertionError):
    """An adapter sent, or a sandbox answered, something the official spec does not allow."""


@dataclass
class ContractChecker:
    check_requests: bool = True
    check_responses: bool = True
    violations: list[str] = field(default_factory=list)
    checked: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, ex: Exchange) -> None:
        if ex.marketplace not in SPEC_FILES or not ex.documented:
            return  # a file's download link is no API call: its content is checked by whoever reads it
        specs = load_specs(ex.marketplace)
        problems: list[str] = []
        if self.check_requests:
            ctype = ex.request_headers.get("Content-Type", "application/json")
            for err in specs.request_errors(ex.method, ex.path, query=ex.query, headers=ex.request_headers,
                                            body=ex.request_body, content_type=ctype):
                problems.append(f"request {ex.method} {ex.path} ({ex.endpoint}): {err}")
        if self.check_responses and ex.status != 429 and ex.status < 500:
            for err in specs.response_errors(ex.method, ex.path, ex.status, body=ex.response_body,
                                             content_type=ex.content_type, headers=ex.response_headers,
                                             query=ex.query, request_headers=ex.request_headers,
                                             request_body=ex.request_body):
                problems.append(f"response {ex.status} to {ex.method} {ex.path} ({ex.endpoint}): {err}")
        with self._lock:
            self.checked += 1
            self.violations.extend(p[:800] for p in problems)

    def install(self) -> ContractChecker:
        add_exchange_hook(self)
        return self

    def uninstall(self) -> None:
        remove_exchange_hook(self)

    def __enter__(self) -> ContractChecker:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def assert_clean(self) -> None:
        if self.violations:
            shown = "\n".join(self.violations[:10])
            raise ContractViolation(f"{len(self.violations)} contract violation(s) in {self.checked} exchanges:\n{shown}")
