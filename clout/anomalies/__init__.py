"""Anomaly detectors: burst, bot-likeness, lockstep rings and edge-stream microclusters."""
