"""The runtime: the engine loop, follow-ups, metrics and logging, wired from explicit collaborators."""
