"""Typed errors of the token endpoints; `app.py` turns them into responses in one place.

The JSON body is RFC 6749 §5.2's shape; `details` repeats the description
because the Docker client shows that field to its user.
"""

from __future__ import annotations

__all__ = [
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "PayloadTooLarge",
    "TemporarilyUnavailable",
    "TokenEndpointError",
    "Unauthorized",
    "UnsupportedGrantType",
]


class TokenEndpointError(Exception):
    status = 400
    error = "invalid_request"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, str]:
        return {
            "error": self.error,
            "error_description": self.description,
            "details": self.description,
        }


class InvalidRequest(TokenEndpointError):
    pass


class InvalidScope(TokenEndpointError):
    error = "invalid_scope"


class InvalidGrant(TokenEndpointError):
    error = "invalid_grant"


class UnsupportedGrantType(TokenEndpointError):
    error = "unsupported_grant_type"


class InvalidClient(TokenEndpointError):
    status = 401
    error = "invalid_client"


class PayloadTooLarge(TokenEndpointError):
    status = 413


class Unauthorized(TokenEndpointError):
    """Wrong Basic credentials on GET /token: 401 with a Basic challenge."""

    status = 401
    error = "unauthorized"

    def __init__(self, description: str, realm: str) -> None:
        super().__init__(description)
        self.realm = realm

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{self.realm}"'}


class TemporarilyUnavailable(TokenEndpointError):
    status = 503
    error = "temporarily_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}
