"""modl: the catalog engine (schema, validation, renderers, command line). Never imports torch."""

__version__ = "0.1.0"
