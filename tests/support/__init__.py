"""Shared test support: synthetic data, naive references, scratch projects (no tests here)."""
