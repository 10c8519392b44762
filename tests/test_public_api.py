"""The public surface of CONTRACT.md: names, the error tree, and a cheap import."""

from __future__ import annotations

import subprocess
import sys

import pienteger_nb
from pienteger_nb import errors

CONTRACT_NAMES = {
    "Client", "Completion", "Model", "Usage", "Choice", "PromptForm", "usage", "usage_summary",
    "complete_many", "load_ipython_extension", "PientegerError", "ConfigurationError",
    "APIConnectionError", "APITimeoutError", "APIStatusError", "BadRequestError", "AuthenticationError",
    "PermissionDeniedError", "NotFoundError", "RateLimitError", "InternalServerError", "StreamError",
    "set_prices", "prices", "set_budget", "BudgetExceededError", "Estimate",
}


def test_all_lists_the_contract_names_and_each_resolves():
    assert CONTRACT_NAMES <= set(pienteger_nb.__all__)
    for name in pienteger_nb.__all__:
        assert getattr(pienteger_nb, name) is not None, name
    assert callable(pienteger_nb.usage) and callable(pienteger_nb.complete_many)


def test_the_error_tree_is_the_contract_s():
    tree = {
        errors.ConfigurationError: errors.PientegerError,
        errors.APIConnectionError: errors.PientegerError,
        errors.APITimeoutError: errors.APIConnectionError,
        errors.APIStatusError: errors.PientegerError,
        errors.StreamError: errors.PientegerError,
        errors.BudgetExceededError: errors.PientegerError,
        errors.BadRequestError: errors.APIStatusError,
        errors.AuthenticationError: errors.APIStatusError,
        errors.PermissionDeniedError: errors.APIStatusError,
        errors.NotFoundError: errors.APIStatusError,
        errors.RateLimitError: errors.APIStatusError,
        errors.InternalServerError: errors.APIStatusError,
    }
    for cls, parent in tree.items():
        assert cls.__bases__ == (parent,), cls
        assert getattr(pienteger_nb, cls.__name__) is cls
    statuses = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
                404: "NotFoundError", 429: "RateLimitError", 500: "InternalServerError", 503: "InternalServerError"}
    for status, name in statuses.items():
        assert errors.status_error_class(status).__name__ == name


def test_importing_the_package_loads_no_pandas_ipywidgets_ipython_or_requests():
    code = ("import sys, pienteger_nb; "
            "print([m for m in ('pandas', 'ipywidgets', 'IPython', 'requests') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_the_client_module_imports_no_ipython_ipywidgets_or_pandas():
    code = ("import sys, pienteger_nb.client; "
            "print([m for m in ('pandas', 'ipywidgets', 'IPython', 'sqlite3') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_the_emulator_imports_neither_the_client_nor_requests():
    code = ("import sys, pienteger_nb.emulator; "
            "print(sorted(m for m in sys.modules if m == 'requests' or m.startswith("
            "('pienteger_nb.client', 'pienteger_nb.ledger', 'pienteger_nb.batch', 'pienteger_nb.notebook'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
