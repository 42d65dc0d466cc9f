"""What the 1C part adds to the cloud's web app: the exchange endpoint (when cloud.toml has `[onec]`
with a password) and the print forms. `create_app` calls `register` once."""

from __future__ import annotations

from typing import Any

from cloud_sync.onec.exchange import register_exchange
from cloud_sync.web import print_forms


def register(app: Any, cloud_config: Any, db_path: str) -> None:
    register_exchange(app, cloud_config, db_path)
    app.register_blueprint(print_forms.bp)
