"""Teacher loading and student construction."""
