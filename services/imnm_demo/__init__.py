"""Synthetic IMNM patient streams for the demo (`imnm up --demo`), tests and benchmarks."""
