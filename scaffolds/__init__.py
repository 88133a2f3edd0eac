"""The built-in search policies (flat, tree, forest, aide, multi-aide).

They are registered through the `speedrun.scaffolds` entry point, exactly as a third party's
scaffold is; the API they implement is `harness.search`.
"""
