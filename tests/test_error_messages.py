"""APIStatusError.message is the service's own words; what to do is .advice; str() joins them."""

from __future__ import annotations

import pytest
from conftest import TEST_KEY

from pienteger_nb import Client
from pienteger_nb.errors import APIStatusError, BadRequestError, InternalServerError, NotFoundError


@pytest.fixture
def client(emulator):
    return Client(api_key=TEST_KEY, base_url=emulator.url, max_retries=0)


def test_the_message_is_the_services_verbatim_and_the_hint_is_advice(client, emulator):
    said = "The model `nope-model` does not exist"
    emulator.queue_fault("status", status=404, message=said, code="model_not_found")
    with pytest.raises(NotFoundError) as caught:
        client.complete("x", model="nope-model")
    err = caught.value
    assert err.message == said  # code that matches on what the service said keeps working
    assert "check the model name" in err.advice and "check the model name" not in err.message
    text = str(err)
    assert text.startswith(said) and "HTTP 404" in text and text.endswith(err.advice)
    if err.request_id:
        assert err.request_id in text


def test_a_bad_parameter_names_it_in_the_advice(client, emulator):
    with pytest.raises(BadRequestError) as caught:
        client.complete("x", extra_body={"max_tokens": -5})
    err = caught.value
    assert err.message and "fix" not in err.message
    assert err.advice.startswith("fix ")


def test_retries_exhausted_say_so_in_the_advice_not_the_message():
    from pienteger_nb.emulator import Emulator

    with Emulator(api_key=TEST_KEY) as emu:
        emu.queue_fault("status", status=500, times=2, message="boom")
        # An injected sleep: no real waiting between the two tries.
        client = Client(api_key=TEST_KEY, base_url=emu.url, max_retries=1, sleep=lambda seconds: None)
        with pytest.raises(InternalServerError) as caught:
            client.complete("x")
    assert caught.value.message == "boom"
    assert "after 2 attempts" in caught.value.advice and "after 2 attempts" in str(caught.value)


def test_an_error_made_by_hand_has_empty_advice():
    err = APIStatusError("nope", status_code=418, request_id="req_9")
    assert err.advice == "" and str(err) == "nope (HTTP 418, request id req_9)"
