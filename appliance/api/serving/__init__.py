"""Serving the HTTP application on Waitress in one process: the server loop and its shutdown
order, the guards against slow or greedy clients, the connection balance between siblings."""
