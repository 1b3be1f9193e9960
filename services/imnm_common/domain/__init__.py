"""The pure IMNM domain core: events in, patient state and alert transitions out.

No I/O, no clock reads, no Kafka: the replay CLI, the faust tracker and the benchmarks all drive
the same :mod:`imnm_common.domain.engine` functions.
"""
