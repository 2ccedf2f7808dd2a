"""clout: influence scores and gaming flags from live social-interaction streams."""

__version__ = "0.1.0"
