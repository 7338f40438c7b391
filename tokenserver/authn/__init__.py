"""Identity sources behind one protocol, tried in order by `chain.Authenticator`."""
