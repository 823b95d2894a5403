"""The package version, in a module of its own: the verification agent reports it without importing Robot."""

__version__ = "0.1.0"
