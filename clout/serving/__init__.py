"""Redis -> HTTP read API, live dashboard and a typed client for downstream services."""
