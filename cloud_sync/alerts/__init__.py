"""Alerts: Telegram messages on critical stock, order events, near deadlines and held pushes.

Modules: `outbox` (the queue of messages, its delivery and the Telegram sender) and `checks` (what
deserves a message; reads orders and stock)."""
