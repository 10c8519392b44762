"""The notebook room: what a user sees in Jupyter and IPython.

The ``%%pienteger`` / ``%pienteger`` magics (``magics``), their subcommands (``commands``),
argument parsing (``args``) and one-line failures (``failures``); the throttled streaming
display and output formats (``render``); the compare table (``compare_view``), background
jobs (``background``) and failed cells' errors (``cells``); the ``PromptForm`` widget (``form``, with its view
``form_view`` and texts ``form_text``).

May import every other room and IPython/ipywidgets; nothing imports it but the package root
(``load_ipython_extension``, ``PromptForm``) and the CLI.
"""

from __future__ import annotations

__all__ = ["PientegerMagics", "PromptForm", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> object:
    # IPython and ipywidgets load only when their part is used.
    if name == "PromptForm":
        from .form import PromptForm

        return PromptForm
    if name in ("PientegerMagics", "load_ipython_extension", "unload_ipython_extension"):
        from . import magics

        return getattr(magics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
