"""The consumer program: events from Kafka into the audit database."""
