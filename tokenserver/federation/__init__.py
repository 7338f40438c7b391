"""Keyless CI: a pipeline's OIDC ID token, verified against a configured trust, is its login."""
