"""The event pipeline: the producer side (in the API program) and the consumer program."""
