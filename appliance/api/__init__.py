"""The API program: Waitress + Bottle, the middleware that records every exchange, the routes."""
