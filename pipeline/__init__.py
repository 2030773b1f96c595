"""Beam stages (read, validate, filter, tokenize, sequence, write, stats) and their composition."""
