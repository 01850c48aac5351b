"""What machine a benchmark ran on, for the header of every bench table."""

from lmforge.machine import cpu_name

__all__ = ["cpu_name"]
