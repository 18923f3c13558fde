"""The base every program stands on: settings, logs, metrics, tracing, ids, time, SQLite and
Kafka helpers, the process skeleton. Imports nothing else of the appliance."""
