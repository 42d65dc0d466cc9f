"""marketsync package."""
