"""Stock: one ledger per item and own warehouse (on hand, reserved, available; append-only moves), the
push planner that turns it into what each account shows (allocation, zero guard, rate-aware sending),
which own warehouse serves a marketplace warehouse, and `why` a published number is what it is.

Modules: `ledger`, `warehouses`, `push`, `why`. The ledger knows no marketplace and no HTTP."""
