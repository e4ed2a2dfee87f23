"""Stages: plain functions, artifact dir in -> artifact dir out with a manifest; usable without the CLI."""
