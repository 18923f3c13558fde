"""The API's HTTP application: the WSGI app (Bottle, the GET / fast path, the audit middleware),
its routes, JSON in and out, errors, the client address, the token, the OpenAPI document.

Knows nothing of how it is served: serving/ runs it on Waitress, workers/ in several processes.
"""
