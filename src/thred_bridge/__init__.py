"""thred-bridge: payment-processor activity into Thred's books, exactly once, to the cent."""

__version__ = "0.1.0"
