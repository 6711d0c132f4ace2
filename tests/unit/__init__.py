"""The unit tier: tests that need no server (see conftest.py here)."""
