"""KAFKA_* variables reach librdkafka; a property it does not know stops the process in one line."""

from __future__ import annotations

import pytest
from procs import free_port, run_cli

from appliance.core.config import Settings
from appliance.core.kafka import base_config
from appliance.pipeline.producer.sink import producer_config


def test_extra_kafka_variables_become_librdkafka_properties():
    settings = Settings.from_env({"KAFKA_BROKERS": "k1:9092,k2:9092",
                                  "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                  "KAFKA_SASL_MECHANISM": "PLAIN",
                                  "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem"})
    assert base_config(settings) == {"bootstrap.servers": "k1:9092,k2:9092",
                                     "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                                     "ssl.ca.location": "/etc/ca.pem"}


def test_events_are_sent_lz4_compressed_unless_the_operator_says_otherwise():
    assert producer_config(Settings.from_env({"KAFKA_BROKERS": "k1:9092"}))["compression.type"] == "lz4"
    chosen = Settings.from_env({"KAFKA_BROKERS": "k1:9092", "KAFKA_COMPRESSION_TYPE": "zstd"})
    assert producer_config(chosen)["compression.type"] == "zstd"


def test_embedded_means_the_local_broker_port():
    settings = Settings.from_env({"KAFKA_BROKERS": "embedded", "EMBEDDED_BROKER_PORT": "19999"})
    assert settings.kafka_bootstrap == "127.0.0.1:19999" and settings.embedded_broker


@pytest.mark.parametrize("command", ["api", "consumer"])
def test_unknown_librdkafka_property_is_a_one_line_startup_error(command, tmp_path):
    result = run_cli(command, env={"HOST": "127.0.0.1", "PORT": str(free_port()),
                                   "DATA_DIR": str(tmp_path), "KAFKA_BROKERS": "127.0.0.1:9",
                                   "KAFKA_NOT_A_REAL_PROPERTY": "1"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not.a.real.property" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
