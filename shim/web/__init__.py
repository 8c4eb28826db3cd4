"""The HTTP edge: routes, middleware, endpoints; reading requests, holding them, delivering and streaming."""
