"""Example models and their parity tests (the sample parity suite: ``pytest sample_models``)."""
