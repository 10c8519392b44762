"""The .pienteger accessor on DataFrames and Series: safe templates, output columns, resume."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import TEST_KEY

import pienteger_nb.batch.run  # noqa: F401  (registers the accessor)
from pienteger_nb import Client
from pienteger_nb.batch.accessor import fill


@pytest.fixture
def client(emulator):
    return Client(api_key=TEST_KEY, base_url=emulator.url, on_call=False)


@pytest.fixture
def reviews():
    return pd.DataFrame(
        {
            "review": ["Great tea.", "Too bitter!", "Fine, I guess."],
            "stars": [5, 1, 3],
            "price": [2.5, 3.0, 1.25],
        },
        index=[10, 20, 30],
    )


def sent_prompts(emulator) -> list[str]:
    return [r.body["prompt"] for r in emulator.requests if r.path.endswith("/completions")]


def test_fill_is_safe_interpolation_over_each_rows_columns(reviews):
    template = '{review} ({stars}*, {price:.2f}) {review.upper} {__class__} {{x}} {1+1} {"k": 1}'
    with pytest.warns(UserWarning) as caught:
        filled = fill(template, reviews)
    # Only {__class__} is a plain name that is not a column; the rest is not a field at all.
    assert [str(w.message) for w in caught] == [
        "template field {__class__} names no column; it is sent as typed"
    ]
    assert list(filled.index) == [10, 20, 30]
    assert filled[20] == 'Too bitter! (1*, 3.00) {review.upper} {__class__} {x} {1+1} {"k": 1}'


def test_a_field_that_names_no_column_is_kept_and_warned_about(reviews):
    with pytest.warns(UserWarning, match=r"\{reveiw\} names no column \(did you mean review\?\)"):
        filled = fill("Summarise: {reveiw}", reviews)
    assert set(filled) == {"Summarise: {reveiw}"}


def test_complete_fills_a_new_column_on_a_copy(emulator, client, reviews):
    before = reviews.copy()
    out = reviews.pienteger.complete(
        "Summarise: {review}", out="summary", client=client, progress=False, max_tokens=5
    )
    pd.testing.assert_frame_equal(reviews, before)  # the frame itself is not changed
    assert list(out.columns) == ["review", "stars", "price", "summary"]
    assert list(out.index) == [10, 20, 30]
    assert sorted(sent_prompts(emulator)) == sorted(f"Summarise: {r}" for r in reviews["review"])
    assert out["summary"].map(lambda t: isinstance(t, str) and len(t) > 0).all()


def test_tokens_and_errors_columns(emulator, client, reviews):
    emulator.queue_fault("status", status=400, times=1)
    out = reviews.pienteger.complete(
        "Rate: {review}",
        out="rating",
        tokens=True,
        client=client,
        progress=False,
        concurrency=1,
        max_tokens=5,
    )
    assert list(out.columns) == [
        "review",
        "stars",
        "price",
        "rating",
        "rating_error",
        "rating_prompt_tokens",
        "rating_completion_tokens",
        "rating_total_tokens",
    ]
    assert str(out["rating_total_tokens"].dtype) == "Int64"
    failed = out["rating_error"] != ""
    assert failed.sum() == 1
    assert out.loc[failed, "rating"].isna().all() and out.loc[failed, "rating_total_tokens"].isna().all()
    assert out.loc[~failed, "rating_total_tokens"].gt(0).all()


def test_resume_true_redoes_only_missing_outputs(emulator, client, reviews):
    emulator.queue_fault("status", status=400, times=1)
    first = reviews.pienteger.complete(
        "Q: {review}", out="a", client=client, progress=False, concurrency=1, max_tokens=3
    )
    assert first["a"].isna().sum() == 1
    emulator.reset()
    again = first.pienteger.complete(
        "Q: {review}", out="a", client=client, progress=False, resume=True, max_tokens=3
    )
    assert len(sent_prompts(emulator)) == 1
    assert again["a"].notna().all() and (again["a_error"] == "").all()
    kept = first["a"].notna()
    assert again.loc[kept, "a"].tolist() == first.loc[kept, "a"].tolist()
    emulator.reset()
    same = again.pienteger.complete("Q: {review}", out="a", client=client, progress=False, resume=True)
    assert sent_prompts(emulator) == []
    pd.testing.assert_frame_equal(same, again)


def test_series_values_are_the_prompts_or_fill_a_template(emulator, client):
    s = pd.Series(["one", "two"], index=["x", "y"], name="word")
    texts = s.pienteger.complete(client=client, progress=False, max_tokens=3)
    assert list(texts.index) == ["x", "y"] and texts.name == "word"
    assert texts.map(lambda t: isinstance(t, str)).all()
    emulator.reset()
    s.pienteger.complete("Define {word}; also {value}.", client=client, progress=False, max_tokens=3)
    assert sorted(sent_prompts(emulator)) == ["Define one; also one.", "Define two; also two."]


def test_bad_arguments_are_refused_clearly(client, reviews):
    with pytest.raises(TypeError, match="template must be a string"):
        reviews.pienteger.complete(None, client=client)
    with pytest.raises(ValueError, match="out= must be a column name"):
        reviews.pienteger.complete("{review}", out="", client=client)


def test_a_frame_with_repeated_index_labels_gets_each_row_its_own_output(emulator, client):
    # pd.concat of two frames repeats labels; each row must still get the answer to its prompt.
    frame = pd.DataFrame({"word": ["alpha", "beta", "gamma"]}, index=[0, 0, 1])
    out = frame.pienteger.complete(
        "Define {word}.", out="d", tokens=True, client=client, progress=False, temperature=0, max_tokens=5
    )
    plain = client.with_options(on_call=False)
    expected = [plain.complete(f"Define {w}.", temperature=0, max_tokens=5).text for w in frame["word"]]
    assert list(out.index) == [0, 0, 1]
    assert out["d"].tolist() == expected
    assert out["d_total_tokens"].notna().all()
    again = out.assign(d=[None, out["d"].iloc[1], None]).pienteger.complete(
        "Define {word}.", out="d", client=client, progress=False, resume=True, temperature=0, max_tokens=5
    )
    assert again["d"].tolist() == expected


def test_a_row_with_a_missing_value_in_a_template_field_is_not_sent(emulator, client):
    # "Summarise: nan" is not what anyone means to pay for: the row fails and nothing is sent.
    frame = pd.DataFrame({"review": ["Great tea.", None, "Cold."], "stars": [5, 3, float("nan")]})
    assert frame.pienteger.prompts("{review} ({stars:.0f}*)").tolist() == ["Great tea. (5*)", None, None]
    out = frame.pienteger.complete("{review} ({stars:.0f}*)", out="s", client=client, progress=False, max_tokens=3)
    assert sent_prompts(emulator) == ["Great tea. (5*)"]
    assert out["s"].notna().tolist() == [True, False, False]
    assert out["s_error"].tolist()[1:] == [
        "ValueError: review is NA in this row, so it was not sent",
        "ValueError: stars is NA in this row, so it was not sent",
    ]
    texts = pd.Series(["tea", float("nan")]).pienteger.complete("Define {value}", client=client, progress=False)
    assert texts.notna().tolist() == [True, False] and len(sent_prompts(emulator)) == 2


@pytest.mark.parametrize("order", [
    "import pienteger_nb; assert 'pandas' not in sys.modules; import pandas as pd",  # cheap import
    "import pandas as pd; import pienteger_nb",
    "from pienteger_nb.emulator import Emulator; import pandas as pd",
])
def test_the_accessor_is_there_whatever_the_import_order(order):
    import subprocess
    import sys

    code = f"import sys; {order}; print(hasattr(pd.DataFrame, 'pienteger'), hasattr(pd.Series, 'pienteger'))"
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]
