"""Fuzzing of the parsers and service inputs (issue 8): CI tests and the long-run mode."""
