"""Top-level conftest: keeps the repository root importable (``sample_models``) for every session."""
