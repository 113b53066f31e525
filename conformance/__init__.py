"""bgw-conformance: a conformance kit for PostgreSQL background-worker pools."""

__version__ = "0.1.0"
