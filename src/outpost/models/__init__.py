"""Local model management: registry, Modelfiles, pulls, and the hardware advisor."""
