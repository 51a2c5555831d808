"""Load figures the integration tests collect and the terminal summary prints."""

FIGURES: list[str] = []
