"""JOSH: Juxtaposed Outcomes for Simulation Harvesting, and the ToolWOZ benchmark."""

__version__ = "0.1.0"
