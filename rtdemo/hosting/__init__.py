"""Limits for a shared app: what users may reach on the server, and per-owner quotas."""
