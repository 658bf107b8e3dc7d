"""HTTP routes: each module translates one group of calls into the service."""
