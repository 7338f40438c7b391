"""Token server for the Docker Registry v2 token-auth protocol."""

__version__ = "0.1.0"
