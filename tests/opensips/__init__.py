"""Tests: opensips."""
