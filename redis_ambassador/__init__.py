"""redis-ambassador: one plain Redis endpoint in front of a whole Redis Cluster."""

__version__ = "0.1.0"
