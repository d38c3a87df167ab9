"""The results store: every byte of a results folder (storage), checkpoints, the table, provenance, run files."""
