"""Settings: precedence, no caching, checked values, the masked key, the plain-http rule."""

from __future__ import annotations

import math
import pickle

import pytest
from conftest import TEST_KEY

from pienteger_nb import config
from pienteger_nb.errors import ConfigurationError


def test_precedence_argument_kernel_environment_default(monkeypatch):
    assert config.lookup("model") == ("text-davinci-003", "default")
    monkeypatch.setenv("PIENTEGER_MODEL", "text-ada-001")
    assert config.lookup("model") == ("text-ada-001", "environment")  # read again, never cached
    config.set_kernel("model", "text-curie-001")
    assert config.lookup("model") == ("text-curie-001", "kernel")
    assert config.lookup("model", "text-babbage-001") == ("text-babbage-001", "argument")
    config.clear_kernel("model")
    assert config.get("model") == "text-ada-001"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("temperature", 5, "temperature must be a number from 0 to 2"),
        ("temperature", math.nan, "temperature must be a number from 0 to 2"),
        ("temperature", "hot", "temperature must be a number from 0 to 2"),
        ("max_tokens", -3, "max_tokens must be an integer >= 0"),
        ("max_tokens", 1.5, "max_tokens must be an integer >= 0"),
        ("timeout", 0, "timeout must be a number of seconds > 0"),
        ("timeout", math.inf, "timeout must be a number of seconds > 0"),
        ("max_retries", -1, "max_retries must be an integer >= 0"),
        ("stream", "maybe", "stream must be true or false"),
        ("format", "xml", "format must be one of markdown"),
    ],
)
def test_values_a_call_would_refuse_are_refused_when_set_from_python(name, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        config.set_kernel(name, value)
    assert config.lookup(name)[1] == "default"


def test_text_and_values_are_parsed_alike():
    assert config.set_kernel("temperature", "0.5") == 0.5 == config.set_kernel("temperature", 0.5)
    assert config.set_kernel("temperature", "none") is None
    assert config.set_kernel("stream", "off") is False and config.set_kernel("stream", True) is True
    assert config.set_kernel("max_retries", "3") == 3


def test_unknown_settings_and_the_key_are_refused():
    with pytest.raises(ConfigurationError, match="did you mean temperature"):
        config.set_kernel("temprature", 1)
    with pytest.raises(ConfigurationError, match="not a config setting"):
        config.set_kernel("api_key", TEST_KEY)


def test_a_bad_environment_value_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("PIENTEGER_BASE_URL", "ftp://example.com")
    with pytest.raises(ConfigurationError):
        config.check_base_url(config.get("base_url"))


def test_the_key_masks_itself_and_cannot_be_pickled():
    secret = config.Secret(TEST_KEY)
    for shown in (str(secret), repr(secret), f"{secret}", secret.masked):
        assert TEST_KEY not in shown and TEST_KEY[:-4] not in shown
    assert str(secret) == "****" + TEST_KEY[-4:]
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert TEST_KEY not in str(config.describe())


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765/oaiv1", "http://localhost/x", "http://[::1]:1/",
                                 "https://api.pienteger.com/oaiv1"])
def test_the_key_may_go_to_https_and_loopback(url):
    config.check_key_transport(url)


def test_the_key_never_goes_over_plain_http_elsewhere():
    with pytest.raises(ConfigurationError, match="plain http"):
        config.check_key_transport("http://api.pienteger.com/oaiv1")
