"""Character customizer: design a fictional adult character, lock a reference portrait, take consistent selfies."""

__version__ = "0.1.0"
