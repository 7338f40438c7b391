"""`docker-credential-tokenserver`: docker's credential-helper protocol for registries behind us.

`get` answers a stored refresh token as an identity token (`"Username":
"<token>"`), so docker, podman and skopeo use the refresh grant; a registry
with nothing stored gets one through the device flow (`device_login.py`),
approved by the person in a browser. What is stored lives in one file
readable by its owner only (`credential_file.py`).
"""
