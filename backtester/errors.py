"""The one exception family of bt.

The library raises these; only the CLI turns them into one red line and exit code 1.
Every message names the file or field, what was found, and what to do.
"""

from __future__ import annotations


class BtError(RuntimeError):
    """Base of every error bt reports to a user as one line."""


class ConfigError(BtError):
    """A config file or flag has an unknown key or an invalid value."""


class DataError(BtError):
    """Bars are missing, malformed or inconsistent."""


class EngineError(BtError):
    """Inputs to the simulation kernels are inconsistent."""


class MemoryStoreError(BtError):
    """The memory folder (or a file in it) is unusable as it is."""


class MemoryLockedError(MemoryStoreError):
    """Another live run holds the memory folder's lock."""


class ProviderError(BtError):
    """A provider cannot do its job: an endpoint is unreachable, misconfigured or failing."""
