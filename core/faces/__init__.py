"""The face stage's pure parts: face records and crops, detectors, overlays, synthetic faces."""
