"""The built-in providers, one module each, registered through the `speedrun.models` entry point."""
