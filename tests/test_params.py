"""Parameter checks: refused before anything is sent, with a message naming the parameter and range."""

from __future__ import annotations

import pytest

from pienteger_nb.client.params import PARAMS, build_body


def body(stream: bool = False, include_usage: bool = True, extra_body=None, **params):
    return build_body("hi", model="text-davinci-003", stream=stream, include_usage=include_usage,
                      params=params, extra_body=extra_body)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("temperature", 2.5, "from 0 to 2"),
        ("temperature", -0.1, "from 0 to 2"),
        ("temperature", float("nan"), "from 0 to 2"),
        ("temperature", "hot", "from 0 to 2"),
        ("top_p", 1.01, "from 0 to 1"),
        ("max_tokens", -1, ">= 0"),
        ("max_tokens", 1.5, ">= 0"),
        ("max_tokens", True, ">= 0"),
        ("n", 0, "from 1 to 128"),
        ("n", 129, "from 1 to 128"),
        ("logprobs", 6, "from 0 to 5"),
        ("presence_penalty", 2.1, "from -2 to 2"),
        ("frequency_penalty", -3, "from -2 to 2"),
        ("best_of", 21, "from 1 to 20"),
        ("stop", ["a", "b", "c", "d", "e"], "at most 4"),
        ("stop", [], "at most 4"),
        ("stop", 5, "at most 4"),
        ("echo", "yes", "True or False"),
        ("seed", 1.5, "an integer"),
        ("suffix", 3, "a string"),
        ("logit_bias", {"50256": 101}, "-100 to 100"),
        ("logit_bias", {"not-a-token": 1}, "-100 to 100"),
        ("logit_bias", [1, 2], "-100 to 100"),
        ("logit_bias", {"-1": 5}, "-100 to 100"),  # token ids start at 0: the service refuses -1
        ("logit_bias", {True: 5}, "-100 to 100"),
    ],
)
def test_bad_values_name_the_parameter_and_range(name, value, fragment):
    with pytest.raises(ValueError, match=name) as info:
        body(**{name: value})
    assert fragment in str(info.value)


def test_prompt_and_model_checked():
    with pytest.raises(ValueError, match="prompt"):
        build_body(3, model="m", stream=False, include_usage=True, params={})
    with pytest.raises(ValueError, match="prompt"):
        build_body([], model="m", stream=False, include_usage=True, params={})
    with pytest.raises(ValueError, match="prompt"):
        build_body(["a", 1], model="m", stream=False, include_usage=True, params={})
    with pytest.raises(ValueError, match="model"):
        build_body("x", model="", stream=False, include_usage=True, params={})


def test_unknown_keyword_gets_did_you_mean():
    with pytest.raises(ValueError, match="did you mean max_tokens"):
        body(max_token=5)
    with pytest.raises(ValueError, match="did you mean temperature"):
        body(temprature=0.5)
    with pytest.raises(ValueError, match="extra_body") as info:
        body(zzzzzz=1)
    assert "did you mean" not in str(info.value)


def test_user_is_read_only_and_stream_is_not_a_parameter():
    with pytest.raises(ValueError, match="user is read-only"):
        body(user="me")
    with pytest.raises(ValueError, match=r"use client\.stream"):
        build_body("hi", model="m", stream=False, include_usage=True, params={"stream": True})
    with pytest.raises(ValueError, match="include_usage=False"):
        body(stream_options={"include_usage": False})


def test_best_of_rules():
    assert body(best_of=3, n=2)["best_of"] == 3
    with pytest.raises(ValueError, match="at least n"):
        body(best_of=2, n=3)
    with pytest.raises(ValueError, match="best_of cannot be used with streaming"):
        body(stream=True, best_of=2)


def test_good_values_pass_and_none_is_left_out():
    b = body(
        suffix="end", max_tokens=0, temperature=0, top_p=1, n=2, stop=("a", "b"), echo=True,
        logprobs=0, presence_penalty=-2, frequency_penalty=2.0, best_of=2, logit_bias={50256: -100},
        seed=7,
    )
    assert b == {
        "model": "text-davinci-003", "prompt": "hi", "suffix": "end", "max_tokens": 0, "temperature": 0,
        "top_p": 1, "n": 2, "stop": ["a", "b"], "echo": True, "logprobs": 0, "presence_penalty": -2,
        "frequency_penalty": 2.0, "best_of": 2, "logit_bias": {"50256": -100}, "seed": 7,
    }
    assert "temperature" not in body(temperature=None)


def test_stream_options_and_extra_body():
    assert body(stream=True)["stream_options"] == {"include_usage": True}
    assert "stream_options" not in body(stream=True, include_usage=False)
    assert body(stream=True)["stream"] is True
    # extra_body is merged unchecked, last: new parameters pass through.
    b = body(extra_body={"top_k": 5, "temperature": 9})
    assert b["top_k"] == 5 and b["temperature"] == 9


def test_every_documented_parameter_is_known():
    documented = {"model", "prompt", "suffix", "max_tokens", "temperature", "top_p", "n", "stop", "echo",
                  "logprobs", "presence_penalty", "frequency_penalty", "best_of", "logit_bias", "seed"}
    assert set(PARAMS) == documented
