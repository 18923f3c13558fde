"""Settings.from_env: defaults, every converter, and one-line errors naming what is wrong."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from appliance.core import config
from appliance.core.config import ConfigError, Settings

net = ipaddress.ip_network


# --- defaults -------------------------------------------------------------------------------


def test_defaults_without_any_variable():
    settings = Settings.from_env({})
    assert settings.host == "0.0.0.0"
    assert settings.port == 8080
    assert settings.web_threads == 8
    assert settings.max_body_bytes == 65_536
    assert settings.log_level == "INFO"
    assert settings.shutdown_delay == 0.0
    assert settings.kafka_topic_events == "simple-time-events"
    assert settings.kafka_consumer_group == "simple-time-group"
    assert settings.kafka_brokers is None
    assert settings.kafka_enabled is False
    assert settings.kafka_extra == {}
    assert settings.pod_ip is None and settings.host_ip is None and settings.api_token is None


def test_only_loopback_is_a_trusted_proxy_by_default():
    assert set(Settings.from_env({}).trusted_proxies) == {net("127.0.0.0/8"), net("::1/128")}


def test_db_path_and_spool_dir_default_inside_data_dir():
    settings = Settings.from_env({"DATA_DIR": "/srv/sts"})
    assert settings.data_dir == Path("/srv/sts")
    assert settings.db_path == Path("/srv/sts/events.db")
    assert settings.spool_dir == Path("/srv/sts/spool")


def test_db_path_and_spool_dir_default_inside_default_data_dir():
    settings = Settings.from_env({})
    assert settings.db_path == settings.data_dir / "events.db"
    assert settings.spool_dir == settings.data_dir / "spool"


def test_explicit_db_path_and_spool_dir_win_over_data_dir():
    settings = Settings.from_env({"DATA_DIR": "/srv/sts", "DB_PATH": "/var/db/x.db",
                                  "SPOOL_DIR": "/var/spool/sts"})
    assert settings.db_path == Path("/var/db/x.db")
    assert settings.spool_dir == Path("/var/spool/sts")


def test_without_argument_from_env_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("PORT", "9123")
    assert Settings.from_env().port == 9123


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings.from_env({}).port = 1  # type: ignore[misc]


def test_every_variable_in_the_table_sets_a_settings_field():
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {attr for _, attr, _ in config.VARIABLES} <= fields


def test_values_from_the_environment_are_converted():
    settings = Settings.from_env({
        "HOST": " 127.0.0.1 ", "PORT": "9000", "WEB_THREADS": "4", "MAX_BODY_BYTES": "1024",
        "TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32", "LOG_LEVEL": "debug",
        "SHUTDOWN_DELAY": "2.5", "POD_IP": "10.1.2.3", "KAFKA_BROKERS": "localhost:9092",
        "EVENTS_EXCLUDE_PATHS": "/healthz,/metrics",
    })
    assert settings.host == "127.0.0.1"
    assert settings.port == 9000
    assert settings.web_threads == 4
    assert settings.max_body_bytes == 1024
    assert settings.trusted_proxies == (net("10.0.0.0/8"), net("2001:db8::/32"))
    assert settings.log_level == "DEBUG"
    assert settings.shutdown_delay == 2.5
    assert settings.pod_ip == "10.1.2.3"
    assert settings.kafka_enabled is True
    assert settings.events_exclude_paths == frozenset({"/healthz", "/metrics"})


# --- invalid values: one line naming the variable, the value and what is expected ----------


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("PORT", "abc", "an integer from 1 to 65535"),
    ("PORT", "70000", "an integer from 1 to 65535"),
    ("PORT", "0", "an integer from 1 to 65535"),
    ("TRUSTED_PROXIES", "nonsense", "a comma-separated list of IP addresses or CIDRs"),
    ("WEB_THREADS", "0", "an integer from 1 to 256"),
    ("LOG_LEVEL", "chatty", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("SHUTDOWN_DELAY", "soon", "a number from 0 to 300"),
    ("POD_IP", "pod-1", "an IPv4 or IPv6 address"),
    ("KAFKA_TOPIC_EVENTS", "bad topic!", "a Kafka topic name"),
    ("APPLIANCE_PROGRAMS", "api,web", "a comma-separated list of api, consumer, agent, broker"),
    ("APPLIANCE_PROGRAMS", " , ", "a comma-separated list of api, consumer, agent, broker"),
])
def test_invalid_value_raises_config_error_naming_variable_value_and_expectation(name, value, expected):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert name in message
    assert repr(value) in message
    assert f"expected {expected}" in message
    assert "\n" not in message


def test_config_error_is_a_value_error_without_chained_cause():
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"PORT": "abc"})
    assert isinstance(caught.value, ConfigError)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --- the programs `up` supervises ------------------------------------------------------------


def test_programs_default_to_all_with_the_broker_only_for_the_embedded_one():
    assert Settings.from_env({}).programs == ("consumer", "agent", "api")
    assert Settings.from_env({"KAFKA_BROKERS": "kafka:9092"}).programs == ("consumer", "agent", "api")
    assert Settings.from_env({"KAFKA_BROKERS": "embedded"}).programs == (
        "broker", "consumer", "agent", "api")


def test_appliance_programs_chooses_a_subset_in_start_order():
    settings = Settings.from_env({"APPLIANCE_PROGRAMS": " API, consumer,api ",
                                  "KAFKA_BROKERS": "kafka:9092"})
    assert settings.programs == ("consumer", "api")


def test_the_broker_program_without_the_embedded_broker_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"APPLIANCE_PROGRAMS": "broker,api", "KAFKA_BROKERS": "kafka:9092"})
    assert str(caught.value) == ("APPLIANCE_PROGRAMS='broker,api' is invalid: the broker program "
                                 "runs only with KAFKA_BROKERS=embedded (KAFKA_BROKERS='kafka:9092')")


def test_the_programs_option_replaces_the_variable_and_is_checked_the_same_way():
    settings = Settings.from_env({"APPLIANCE_PROGRAMS": "api", "KAFKA_BROKERS": "embedded"})
    assert config.with_programs(settings, "broker,consumer", "--programs").programs == ("broker", "consumer")
    with pytest.raises(ConfigError) as caught:
        config.with_programs(settings, "api,,nope", "--programs")
    assert str(caught.value) == ("--programs='api,,nope' is invalid: expected a comma-separated "
                                 "list of api, consumer, agent, broker, e.g. api,consumer,agent")
    with pytest.raises(ConfigError) as caught:
        config.with_programs(Settings.from_env({}), "broker", "--programs")
    assert str(caught.value) == ("--programs='broker' is invalid: the broker program runs only "
                                 "with KAFKA_BROKERS=embedded (KAFKA_BROKERS='')")


# --- Kafka properties passed through to librdkafka -----------------------------------------


def test_kafka_security_protocol_becomes_a_librdkafka_property():
    settings = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    assert settings.kafka_extra == {"security.protocol": "SASL_SSL"}


def test_named_kafka_variables_and_empty_values_are_not_librdkafka_properties():
    settings = Settings.from_env({
        "KAFKA_BROKERS": "localhost:9092", "KAFKA_TOPIC_EVENTS": "t", "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "", "UNRELATED": "x",
    })
    assert settings.kafka_extra == {"sasl.mechanism": "PLAIN"}


# --- converters -----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("65535", 65535), (" 8080 ", 8080)])
def test_as_port_accepts_1_to_65535(raw, value):
    assert config.as_port(raw) == value


@pytest.mark.parametrize("raw", ["0", "65536", "-1", "abc", "", "80.5"])
def test_as_port_rejects_everything_else(raw):
    with pytest.raises(ValueError, match="an integer from 1 to 65535"):
        config.as_port(raw)


def test_as_int_range_is_inclusive():
    convert = config.as_int_range(2, 4)
    assert [convert("2"), convert("4")] == [2, 4]
    for raw in ("1", "5", "x"):
        with pytest.raises(ValueError, match="an integer from 2 to 4"):
            convert(raw)


def test_as_float_range_accepts_numbers_in_range_and_rejects_nan_and_infinity():
    convert = config.as_float_range(0, 300)
    assert convert("0") == 0.0 and convert("2.5") == 2.5 and convert("300") == 300.0
    for raw in ("-0.1", "300.1", "nan", "inf", "soon"):
        with pytest.raises(ValueError, match="a number from 0 to 300"):
            convert(raw)


def test_as_networks_parses_addresses_and_cidrs_non_strictly():
    assert config.as_networks("10.0.0.1/8, ::1 ,192.0.2.7") == (
        net("10.0.0.0/8"), net("::1/128"), net("192.0.2.7/32"))


def test_as_networks_of_empty_text_trusts_no_proxy():
    assert config.as_networks(" , ") == ()


@pytest.mark.parametrize("raw", ["nonsense", "10.0.0.0/33", "10.0.0.0/8,garbage"])
def test_as_networks_rejects_anything_not_an_address_or_cidr(raw):
    with pytest.raises(ValueError, match="comma-separated list"):
        config.as_networks(raw)


def test_as_log_level_is_case_insensitive():
    assert config.as_log_level(" warning ") == "WARNING"
    with pytest.raises(ValueError):
        config.as_log_level("TRACE")


def test_as_str_and_as_optional_str_strip_blanks():
    assert config.as_str("  x ") == "x"
    assert config.as_optional_str("  ") is None
    assert config.as_optional_str(" abc ") == "abc"


def test_as_ip_normalises_addresses_and_treats_blank_as_unset():
    assert config.as_ip("") is None
    assert config.as_ip(" 10.0.0.1 ") == "10.0.0.1"
    assert config.as_ip("2001:DB8::0001") == "2001:db8::1"
    with pytest.raises(ValueError, match="an IPv4 or IPv6 address"):
        config.as_ip("10.0.0.256")


def test_as_path_expands_the_home_directory_and_rejects_blank():
    assert config.as_path("~/data") == Path("~/data").expanduser()
    with pytest.raises(ValueError, match="a file system path"):
        config.as_path("  ")


def test_as_path_list_requires_absolute_url_paths():
    assert config.as_path_list("/a, /b,") == frozenset({"/a", "/b"})
    with pytest.raises(ValueError, match="starting with /"):
        config.as_path_list("/a,b")


def test_as_topic_accepts_kafka_topic_names_only():
    assert config.as_topic(" events.v1-x_y ") == "events.v1-x_y"
    for raw in ("", "has space", "x" * 250, "ünïcode"):
        with pytest.raises(ValueError, match="a Kafka topic name"):
            config.as_topic(raw)


def test_as_group_rejects_blank():
    assert config.as_group(" g ") == "g"
    with pytest.raises(ValueError, match="non-empty consumer group"):
        config.as_group("  ")


def test_as_token_requires_eight_characters_without_spaces():
    assert config.as_token("") is None
    assert config.as_token("s3cret-token") == "s3cret-token"
    for raw in ("short", "has a space in it"):
        with pytest.raises(ValueError, match="at least 8 characters"):
            config.as_token(raw)


def test_database_url_defaults_to_the_sqlite_file_under_data_dir():
    settings = Settings.from_env({"DATA_DIR": "/srv/sts"})
    assert settings.database_url.scheme == "sqlite"
    assert settings.database_url.path == Path("/srv/sts/events.db") == settings.db_path


def test_a_sqlite_database_url_names_the_file():
    settings = Settings.from_env({"DATABASE_URL": "sqlite:///var/lib/sts/audit.db"})
    assert settings.db_path == Path("/var/lib/sts/audit.db")
    assert str(settings.database_url) == "sqlite:///var/lib/sts/audit.db"


def test_a_postgresql_url_is_parsed_and_its_password_never_shown():
    raw = "postgresql://sts:p%40ss%2Fw0rd@db.example:6543/audit?sslmode=require"
    url = Settings.from_env({"DATABASE_URL": raw}).database_url
    assert (url.scheme, url.host, url.port, url.user, url.password, url.name) == (
        "postgresql", "db.example", 6543, "sts", "p@ss/w0rd", "audit")
    assert url.options == {"sslmode": "require"}
    shown = url.redacted() + str(url) + repr(url) + repr(Settings.from_env({"DATABASE_URL": raw}))
    assert "p@ss" not in shown and "p%40ss" not in shown
    assert url.redacted() == "postgresql://sts:***@db.example:6543/audit"


@pytest.mark.parametrize("value", [
    "mysql://u:secretpw@h/db", "postgresql://u:secretpw@h", "postgresql://u:secretpw@:5/db",
    "postgresql://u:secretpw@h:99999/db", "postgresql://u:secretpw@h/db?colour=blue",
    "postgresql://u:secretpw@h/db?connect_timeout=soon", "sqlite://", "events.db",
])
def test_a_bad_database_url_is_a_one_line_error_that_does_not_repeat_it(value):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"DATABASE_URL": value})
    message = str(caught.value)
    assert message.startswith("DATABASE_URL=") and "\n" not in message
    assert "sqlite:///PATH or postgresql://" in message and "secretpw" not in message


def test_a_bad_api_token_is_not_repeated_either():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"API_TOKEN": "short"})
    assert "short" not in str(caught.value) and "API_TOKEN=" in str(caught.value)
