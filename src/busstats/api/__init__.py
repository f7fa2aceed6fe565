"""The HTTP edge: the Starlette app, its parameters, OpenAPI document, dashboard and docs pages."""
