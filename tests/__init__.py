"""Tests of event-kafka."""
