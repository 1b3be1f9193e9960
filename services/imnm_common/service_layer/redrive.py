"""Re-driving dead letters: which rejected messages to send again, and what to send.

A message is dead-lettered with its reason when the suite cannot take it (an unknown unit, a
mapping a converter did not know yet, a bug). Once the cause is fixed, the integration team sends
the letters of that cause back to the topic they were read from, as they were: the ingest service
and the tracker take them as they take any message (an event already applied is a duplicate, a
late one is judged as late events are), and a message still refused is dead-lettered again with
its reason. Only the suite's input topics are written to; pure: no Kafka here.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from imnm_common.contracts.deadletter import DeadLetter

NOT_CHOSEN = "not chosen"
NOT_AN_INPUT = "not an input topic"
UNREADABLE = "not a dead letter"


@dataclass(frozen=True, slots=True)
class RedriveChoice:
    """Which letters to send again; an empty set chooses every value."""

    input_topics: frozenset[str]  # where re-driven messages may go: the suite's input topics
    reason_codes: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()
    rejected_since: datetime | None = None
    rejected_before: datetime | None = None

    def why_left(self, letter: DeadLetter) -> str | None:
        """None when the letter is to be sent again, else why it stays."""
        if letter.topic not in self.input_topics:
            return NOT_AN_INPUT  # an alert the console refused is not ours to publish again
        chosen = (
            (not self.reason_codes or letter.reason_code in self.reason_codes)
            and (not self.services or letter.service in self.services)
            and (not self.topics or letter.topic in self.topics)
            and (self.rejected_since is None or letter.rejected_at >= self.rejected_since)
            and (self.rejected_before is None or letter.rejected_at < self.rejected_before)
        )
        return None if chosen else NOT_CHOSEN


@dataclass(frozen=True, slots=True)
class Redriven:
    """The original message of a letter, to send to its topic again."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class RedriveTally:
    sent: Counter[str] = field(default_factory=Counter)  # by the letter's reason code
    left: Counter[str] = field(default_factory=Counter)  # by why

    def summary(self, dry_run: bool) -> str:
        verb = "would re-drive" if dry_run else "re-drove"
        sent = ", ".join(f"{code} {n}" for code, n in sorted(self.sent.items()))
        left = ", ".join(f"{why} {n}" for why, n in sorted(self.left.items()))
        count = sum(self.sent.values())
        return (f"{verb} {count} dead letter{'' if count == 1 else 's'}"
                + (f" ({sent})" if sent else "")
                + f"; left {sum(self.left.values())}" + (f" ({left})" if left else ""))


def to_redrive(value: bytes | None, choice: RedriveChoice, tally: RedriveTally) -> Redriven | None:
    """The message a dead-letter topic's record asks to send again, or None (counted why)."""
    try:
        letter = DeadLetter.model_validate_json(value or b"")
    except ValidationError:
        tally.left[UNREADABLE] += 1
        return None
    why = choice.why_left(letter)
    if why is not None:
        tally.left[why] += 1
        return None
    tally.sent[letter.reason_code] += 1
    original = (base64.b64decode(letter.payload) if letter.payload_encoding == "base64"
                else letter.payload.encode("utf-8"))
    key = None if letter.key is None else letter.key.encode("utf-8")
    return Redriven(letter.topic, key, original)
