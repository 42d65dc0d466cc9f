"""The cloud's command lines (top floor): `cloud serve` and the one-shot `sync`/`stock` commands
(`cloud`), prices and reports (`money`), users (`users`) and the 1C import (`onec`)."""
