"""Shared kernel of imnm-safety: contracts, the pure IMNM domain core, settings, Kafka helpers."""
