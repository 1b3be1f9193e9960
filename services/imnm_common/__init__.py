"""Shared kernel of imnm-safety: event contracts, the pure IMNM domain core, settings and Kafka helpers."""
