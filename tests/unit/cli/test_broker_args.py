"""Every Kafka command finds its broker the same way, and labels the Kafka client's logs."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imnm_cli.broker_args import broker_of
from imnm_common.settings import Settings

SERVICES = Path(__file__).resolve().parents[3] / "services"


def test_bootstrap_flag_wins_over_the_setting() -> None:
    args = argparse.Namespace(bootstrap=" broker-a:9092 ")
    settings = Settings(kafka_bootstrap="broker-b:9092")
    assert broker_of(args, settings, "publish") == "broker-a:9092"
    assert broker_of(argparse.Namespace(bootstrap=None), settings, "publish") == "broker-b:9092"


def test_no_broker_is_said_and_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert broker_of(argparse.Namespace(bootstrap=None), Settings(kafka_bootstrap=""),
                     "tail") is None
    assert capsys.readouterr().err == (
        "imnm tail: no Kafka broker: set IMNM_KAFKA_BOOTSTRAP or pass --bootstrap\n"
    )


def test_the_kafka_clients_warnings_are_labelled_as_its_own() -> None:
    # In a child process: pytest's own log handlers would make basicConfig a no-op here.
    program = (
        "import argparse, logging\n"
        "from imnm_cli.broker_args import broker_of\n"
        "from imnm_common.settings import Settings\n"
        "broker_of(argparse.Namespace(bootstrap='b:1'), Settings(), 'publish')\n"
        "logging.getLogger('aiokafka.producer.sender').warning('Got error produce response')\n"
        "logging.getLogger('aiokafka.consumer').info('not shown: below WARNING')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SERVICES)}
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stderr.splitlines() == [
        "imnm publish: WARNING aiokafka.producer.sender: Got error produce response"
    ]
