"""The examples and subcommands ``%%pienteger?`` and ``%pienteger help`` show under the options."""

from __future__ import annotations

EXAMPLES = """\
examples:
  %%pienteger
  Write a haiku about {topic}

  %%pienteger -m text-ada-001 -t 0 --max-tokens 64 -o answer
  Q: What is the capital of {country}?
  A:

  %%pienteger -f code --stop "\\n\\n" --stop "###"
  # Python: read a CSV file and print the mean of each column

  %%pienteger --dry-run --suffix "the end." --no-interpolate
  Use {braces} as typed

The prompt's {name} and {name[0]} / {name['key']} fields are filled from your variables
and {name:>10}-style format specs apply (never attribute access or expressions; unknown
names stay as typed; {{ }} are braces; JSON such as {"a": {"b": 1}} is left alone).
Option values take {name} fields the same way ($name is not expanded).
Defaults come from %pienteger config, then PIENTEGER_* variables.

subcommands (line magic):
  %pienteger models                      the models the service offers
  %pienteger usage [--by model|day|source|notebook|cell|user] [--since 7d] [--plot]
      [--export FILE]
  %pienteger config [name=value ...]     show or set settings (never the key)
  %pienteger login                       ask for the key (hidden); kept in this kernel only
  %pienteger check                       one call that proves the key and URL work
  %pienteger form                        a widget form that streams into its output
  %pienteger emulator start|stop|status  a local emulator for this kernel (no key needed);
      start [--latency S] [--tokens-per-second N] [--rpm N]: slow it down (e.g. 5 tokens
      a second) to watch the stream and try Stop; its answers are unrelated public-domain prose
  %pienteger prices                      the prices in force (USD per 1K tokens)
  %pienteger budget [5 --per day | off]  show or set the spending limit (this user's calls;
      --scope team: everyone's sharing the ledger)
  %pienteger cache [clear]               stored answers, replays and what they saved; or empty it
  %pienteger explain [-m MODEL]          ask the model why the last failing cell failed
  %pienteger jobs                        background completions: id, model, state, tokens, seconds
  %pienteger stop [ID|all]               stop background completions (all by default)
  %pienteger help                        this text

workflow:
  %%pienteger --compare -m text-ada-001 -m text-curie-001 -t 0 -t 0.8 -o df
  %%pienteger --background -o story    (the kernel stays free; Stop in the output)
  %%pienteger -f code --insert         (the answer also lands in a new cell below)
  Prompts may quote cells: {In[3]}, {Out[3]}, {Err[3]} (the error of cell 3), {_}
"""


__all__ = ["EXAMPLES"]
