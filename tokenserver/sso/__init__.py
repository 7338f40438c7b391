"""People signing in to the web page through the organisation's OpenID provider."""
