"""The config models (schema only) and the scheme rules: what a run is, as data."""
