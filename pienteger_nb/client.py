"""Client: placeholder until the client lands (issue 3); the helper replaces this file."""

from __future__ import annotations


class Client:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("the client is being written")


class Stream:
    pass
