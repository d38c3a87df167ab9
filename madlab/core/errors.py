"""Errors a user can fix. The CLI turns them into one line on stderr and exit code 2."""


class MadlabError(Exception):
    """Bad input: a config, dataset, weights file or option the user has to fix.

    The message must name what is wrong (the config key, the file) in one line.
    """


class ConfigError(MadlabError):
    """A config file or override that does not validate."""


class DatasetError(MadlabError):
    """A dataset that is missing, corrupt or too small for what was asked."""


class RunFailed(Exception):
    """A run that failed for a non-transient reason (e.g. NaN loss); recorded, not retried."""

