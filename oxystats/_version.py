"""The version of oxystats (read by the build, and sent in the User-Agent)."""

__version__ = "0.1.0"
