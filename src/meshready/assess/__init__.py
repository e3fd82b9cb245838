"""Assessment: requests + host facts -> a report. Pure and deterministic."""
