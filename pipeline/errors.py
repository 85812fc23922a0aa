"""Errors shared by more than one room of the pipeline.

ConfigError   a setting is missing or malformed; the message names it
"""


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""
