"""Fake LLM servers the e2e tests run on 127.0.0.1 (real agents talk to them instead of a real API)."""
