"""Access: the manager UI's users (passwords, sessions, API tokens, login throttling) and the secrets
entered in Settings (marketplace tokens, the bot token; encrypted at rest)."""
