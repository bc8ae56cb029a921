"""JSON schemas shipped with hulumed, usable by name (``hulumed.structured.SCHEMAS``; docs/structured.md)."""
