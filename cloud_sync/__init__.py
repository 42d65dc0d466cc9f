"""The central service: one place that runs a seller's multi-marketplace FBS business.

Rooms, each a subpackage with a docstring saying what it owns; imports run one way, from the top floor
down, never back up:

    web/  cli/  service/cloud.py           top: HTTP, command lines, the running service's wiring
    service/ (accounts, sync, jobs)        the coordinator: adapters, schedules, one-shot syncs
    orders/  money/  alerts/  onec/        the domain
    stock/  catalog/  access/
    db.py  config.py  config_sections.py   bottom: storage and configuration (cloud.toml read once, typed)

The domain knows no HTTP and no marketplace by name: what a marketplace is like comes from its adapter
(`marketplaces/`) through the common interface.
"""
