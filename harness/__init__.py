"""speedrun: a harness that benchmarks LLM agents on reproducing training-speedrun records."""

__version__ = "0.1.0"
