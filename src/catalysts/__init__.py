"""catalysts: track the catalysts and risks of an investment thesis in the news."""

__version__ = "0.1.0"
