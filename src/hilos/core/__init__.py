"""Core services every domain uses: settings, database, ids, clock, tenancy, auth, bus, errors."""
