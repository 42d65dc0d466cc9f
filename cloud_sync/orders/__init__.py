"""Orders: every order of every account in one flow from arrival to hand-over, with one unified status.

Modules: `records` (the tables and the small writes every step shares), `intake` (ingest new orders and
status changes: reserve, queue the marketplace actions, send pick tasks), `mp_actions` (the marketplace
calls still to make, retried with backoff), `site_messages` (what sites report), `handovers`, `listing`
(reading orders and events) and `desk` (bulk actions of the manager)."""
