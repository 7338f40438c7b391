"""Thin HTTP handlers per API area: check the request and the token, call storage, answer."""
