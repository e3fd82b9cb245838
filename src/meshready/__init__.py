"""meshready: kernel readiness for service-mesh traffic interception."""

__version__ = "0.1.0"
