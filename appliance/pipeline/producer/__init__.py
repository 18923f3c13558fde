"""Events from the API to Kafka: spool, relay, delivery tracking, broker watch."""
