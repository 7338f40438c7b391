"""OCI Distribution API service guarded by token-server JWTs."""

__version__ = "0.1.0"
