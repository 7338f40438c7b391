"""Thin HTTP routers over the token server's services."""
