"""Textual terminal dashboard of a simple-time-service appliance (talks to it over HTTP only)."""
