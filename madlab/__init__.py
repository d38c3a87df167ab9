"""madlab: simulate self-consuming (MAD) generative training loops and measure their collapse."""

__version__ = "0.1.0"
