"""Ingest: raw HL7 v2 and FHIR messages from the hospital's interfaces into canonical events.v1.

``domain`` converts (pure: a message in, events or a rejection with a reason out), ``adapters``
move messages (Kafka), ``entrypoints`` run it as a process.
"""
