"""The status agent program: probes every component, records its health, recycles the embedded broker."""
