"""Sub-commands that belong to later features (ensemble, cv, sweep, report) register here."""
