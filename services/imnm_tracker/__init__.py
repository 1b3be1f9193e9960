"""The tracker service: the domain engine on Kafka with faust-streaming.

``imnm tracker`` runs one worker; workers started with the same ``--app-id`` form one consumer
group and share the partitions of ``imnm.events.v1``. Per patient they hold a
``PatientState`` in a changelog-backed faust table co-partitioned with the events, publish
alert.v1 transitions to ``imnm.alerts.v1`` and rejected input to ``imnm.deadletter.v1``, and
serve Prometheus metrics on ``/metrics`` (``IMNM_TRACKER_METRICS_PORT``).

Design, in short (details in each module):

- batching (:mod:`.processing`): messages come in batches; before each event the patient's
  evaluations due strictly before it fire, after the batch every touched patient advances to
  the clock's now, so events of one instant delivered together are judged together;
- time (:mod:`.clock`, :mod:`.due_index`): a timer fires due evaluations from an in-memory
  index of due times (a heap), rebuilt from the table after every rebalance; "now" is the wall
  clock, or a file / fixed instant for tests and demos;
- delivery (:mod:`.core`): at-least-once; output is published and acknowledged by the broker
  before states are written and offsets committed; ``alert_id`` is deterministic;
- faust specifics (:mod:`.app`, :mod:`.faust_context`, :mod:`.faust_fixes`): manual acks,
  explicit partition context for table access, two workarounds (stalled offset commits; table
  recovery records lost to a fetch that outlives a rebalance).

Modules, one job each:

- :mod:`.processing`: bytes in, (state', transitions, dead letter) out; no faust.
- :mod:`.core`: batches and timer ticks against a state store and a publisher.
- :mod:`.due_index`: which of this worker's patients is due when.
- :mod:`.stored`: the table's value format (a header line, then the state).
- :mod:`.deadletters`, :mod:`.metrics`, :mod:`.clock`, :mod:`.options`, :mod:`.errors`.
- :mod:`.topics_setup`: create the topics, check co-partitioning.
- :mod:`.app`: the faust app (topics, table, agent, timer) around the core.
- :mod:`.worker`: run one worker (topics first, then metrics, then faust).
- :mod:`.testing`: worker subprocesses on a real broker, for tests and smoke checks.
"""
