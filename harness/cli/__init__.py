"""The `speedrun` command: a thin face that parses flags, calls the library and renders."""
