"""The command server: correlation, storage, the live feed, the HTTP API and wiring."""
