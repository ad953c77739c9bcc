"""Load tests for finsent: a Locust suite, step-load sweeps with plots, and a cost report."""
