"""Evidence: signed in-toto statements (approval, build, removal, override) and quorums."""
