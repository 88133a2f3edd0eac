"""Errors a user can cause: one line that says what to do, rendered without a traceback."""


class SpeedrunError(Exception):
    """An error with an actionable one-line message for the user."""


class ManifestError(SpeedrunError):
    """A task or record manifest is missing or malformed."""


class ConfigError(SpeedrunError):
    """A flag, model name, key or setting is wrong or missing."""


class DataError(SpeedrunError):
    """Data could not be prepared or verified."""


class MachineBusy(SpeedrunError):
    """Runs could not be timed: something else took the machine's cores while they ran."""


class BudgetExceeded(SpeedrunError):
    """A cost or token budget was reached; the evaluation stops cleanly and can resume."""
