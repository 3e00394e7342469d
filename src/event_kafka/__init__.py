"""event-kafka."""
