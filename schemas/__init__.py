"""Vocabulary layouts, field names, dataset registry and output schemas: one source of truth."""
