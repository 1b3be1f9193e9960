"""The pharmacy alert console: a worklist of alert.v1 transitions and the actions taken on them.

``domain`` decides (pure), ``adapters`` keep and move data (SQL store, Kafka), ``service_layer``
joins them for one use case, ``entrypoints`` are the HTTP app and the process that runs it.
"""
