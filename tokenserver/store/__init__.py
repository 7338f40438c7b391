"""Database models and queries of the token server."""
